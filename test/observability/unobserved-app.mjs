// Run by meter-loading.e2e-spec.ts as a child process under record-imports.mjs: the built module with
// query events and the slow-query log on but no meter provider; prints the query's answer as JSON.
// Env: DATABASE_URL (verify-full), DATABASE_SSL_ROOT_CERT (CA path).
await import('reflect-metadata');
const { NestFactory } = await import('@nestjs/core');
const { DatabaseService, SecureDatabaseModule, sql } = await import('../../dist/index.js');

let events = 0;
const { DATABASE_URL: url, DATABASE_SSL_ROOT_CERT: sslRootCert } = process.env;
const app = await NestFactory.createApplicationContext(
  { imports: [SecureDatabaseModule.forRoot({ url, sslRootCert, appEnv: 'production', slowQueryMs: 1, onQuery: () => void events++ })] },
  { logger: false, abortOnError: false },
);
const value = await app.get(DatabaseService).fetchval(sql`SELECT ${41}::int + 1`);
await app.close();
process.stdout.write(JSON.stringify({ value, events }));
