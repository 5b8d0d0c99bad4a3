// Loader hooks (node --import ./record-imports.mjs): every module specifier resolved in the process that
// names an @opentelemetry package is appended to the file IMPORTS_LOG. Hooks run on a thread of their own.
import { register } from 'node:module';

register(
  `data:text/javascript,${encodeURIComponent(`
    import { appendFileSync } from 'node:fs';
    export async function resolve(specifier, context, next) {
      if (specifier.includes('@opentelemetry')) appendFileSync(process.env.IMPORTS_LOG, specifier + '\\n');
      return next(specifier, context);
    }
  `)}`,
);
