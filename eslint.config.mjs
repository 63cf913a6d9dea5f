// ESLint flat config: typescript-eslint's recommended rules for the project's
// TypeScript (src/, test/, bench/). Run by `npm run lint` and `npm test`.
import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {
    // Build output, coverage and the kernel series' C are not ours to lint here.
    ignores: ['dist/**', 'build/**', 'bench/out/**', 'coverage/**', '.tap/**', 'node_modules/**', 'kernel-patch/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Tests check the CLI's terminal output, whose escape sequences (\r\x1b[K)
    // are control characters on purpose.
    files: ['test/**'],
    rules: { 'no-control-regex': 'off' },
  },
  {
    // CommonJS fixtures and the install hook run under plain Node.
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
)
