// ESM entry point: the same module instance as require('pidfd-reap').
export * from './index.js'
