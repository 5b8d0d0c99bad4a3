import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultApplicationName, detectCloud, packageNameAbove } from './cloud-platform.js';

describe('cloud platform facts and the default application_name', () => {
  let root: string;
  /** root/app/package.json names the app; root/app/dist/package.json only sets the module type. */
  let entry: string;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'app-name-'));
    mkdirSync(join(root, 'app', 'dist'), { recursive: true });
    writeFileSync(join(root, 'app', 'package.json'), JSON.stringify({ name: '@acme/orders-api', version: '1.0.0' }));
    writeFileSync(join(root, 'app', 'dist', 'package.json'), JSON.stringify({ type: 'commonjs' }));
    entry = join(root, 'app', 'dist', 'main.js');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('names the app from its own package.json under `node dist/main.js` (no npm variables)', () => {
    expect(packageNameAbove(entry)).toBe('@acme/orders-api');
    expect(defaultApplicationName({}, {}, entry)).toBe('@acme/orders-api');
  });

  it('prefers the platform service name and appends the platform', () => {
    const env = { RAILWAY_ENVIRONMENT: 'production', RAILWAY_SERVICE_NAME: 'api' };
    expect(defaultApplicationName(detectCloud(env, 'db.example.com'), env, entry)).toBe('api@railway');
    const run = { K_SERVICE: 'orders' };
    expect(defaultApplicationName(detectCloud(run, 'db.example.com'), run, entry)).toBe('orders@cloud-run');
    // A platform without a service name still gets the app's name.
    expect(defaultApplicationName({ platform: 'heroku' }, {}, entry)).toBe('@acme/orders-api@heroku');
  });

  it('ignores an entry inside node_modules (a tool, not the app), then uses npm_package_name, then "nestjs"', () => {
    const tool = join(root, 'app', 'node_modules', 'pm2', 'lib', 'ProcessContainerFork.js');
    expect(packageNameAbove(tool)).toBeUndefined();
    expect(defaultApplicationName({}, { npm_package_name: 'shop' }, tool)).toBe('shop');
    expect(defaultApplicationName({}, {}, tool)).toBe('nestjs');
    expect(defaultApplicationName({}, {}, undefined)).toBe('nestjs'); // node -e, the REPL
  });

  it('finds no name when no package.json above the entry has one', () => {
    expect(packageNameAbove(join(root, 'main.js'))).toBeUndefined(); // tmpdir has no package.json above it
  });

  it('keeps at most 63 bytes of safe characters, and the platform suffix', () => {
    const name = defaultApplicationName({ platform: 'huggingface-spaces', service: `user/${'x'.repeat(80)} space\n` }, {}, undefined);
    expect(Buffer.byteLength(name)).toBe(63);
    expect(name).toMatch(/^user\/x+@huggingface-spaces$/);
    expect(defaultApplicationName({ service: 'my api;DROP' }, {}, undefined)).toBe('my_api_DROP');
    expect(defaultApplicationName({ service: 'café' }, {}, undefined)).toBe('caf_');
  });

  it('detects the database provider from the host name', () => {
    expect(detectCloud({}, 'ep-cool-1-pooler.us-east-2.aws.neon.tech').databaseProvider).toBe('neon');
    expect(detectCloud({}, 'aws-0-eu-west-1.pooler.supabase.com').databaseProvider).toBe('supabase');
    expect(detectCloud({}, 'app.cluster-abc.eu-west-1.rds.amazonaws.com').databaseProvider).toBe('aws-rds');
    expect(detectCloud({}, 'shop.postgres.database.azure.com').databaseProvider).toBe('azure');
    expect(detectCloud({}, '10.0.0.5').databaseProvider).toBeUndefined();
  });
});
