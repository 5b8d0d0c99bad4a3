import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** Where the app runs and who hosts the database, for application_name and the startup log. */
export interface CloudFacts {
  platform?: string;
  service?: string;
  databaseProvider?: string;
}

const PLATFORMS: Array<{ name: string; detect: string; service?: string }> = [
  { name: 'huggingface-spaces', detect: 'SPACE_ID', service: 'SPACE_ID' },
  { name: 'railway', detect: 'RAILWAY_ENVIRONMENT', service: 'RAILWAY_SERVICE_NAME' },
  { name: 'render', detect: 'RENDER', service: 'RENDER_SERVICE_NAME' },
  { name: 'fly', detect: 'FLY_APP_NAME', service: 'FLY_APP_NAME' },
  { name: 'heroku', detect: 'DYNO', service: 'HEROKU_APP_NAME' },
  { name: 'vercel', detect: 'VERCEL', service: 'VERCEL_PROJECT_PRODUCTION_URL' },
  { name: 'cloud-run', detect: 'K_SERVICE', service: 'K_SERVICE' },
  { name: 'azure', detect: 'WEBSITE_SITE_NAME', service: 'WEBSITE_SITE_NAME' },
];

const DATABASE_HOSTS: Array<[RegExp, string]> = [
  [/\.neon\.tech$/i, 'neon'],
  [/\.supabase\.(co|com)$/i, 'supabase'],
  [/\.(rlwy\.net|railway\.internal|railway\.app)$/i, 'railway'],
  [/\.render\.com$/i, 'render'],
  [/\.(flycast|fly\.dev|fly\.io|internal)$/i, 'fly'],
  [/\.amazonaws\.com$/i, 'aws-rds'],
  [/\.postgres\.database\.azure\.com$/i, 'azure'],
];

export function detectCloud(env: NodeJS.ProcessEnv, host: string): CloudFacts {
  const platform = PLATFORMS.find((p) => env[p.detect]);
  return {
    platform: platform?.name,
    service: platform?.service ? env[platform.service] : undefined,
    databaseProvider: DATABASE_HOSTS.find(([pattern]) => pattern.test(host))?.[1],
  };
}

/** PostgreSQL keeps the first 63 bytes of application_name. */
const MAX_APPLICATION_NAME = 63;

/**
 * e.g. `my-api@railway`, or `my-api` off the known platforms; at most 63 bytes, so the platform suffix
 * survives a long name. The app is the platform's service name, else the `name` of the app's own
 * package.json (found from the entry script, so `node dist/main.js` in a container names the app as
 * `npm start` does), else the npm package name of the running script, else `nestjs`.
 */
export function defaultApplicationName(cloud: CloudFacts, env: NodeJS.ProcessEnv, entryScript: string | undefined = process.argv[1]): string {
  const app = (cloud.service || packageNameAbove(entryScript) || env.npm_package_name || 'nestjs').replace(/[^\w.@/-]/g, '_');
  const suffix = cloud.platform ? `@${cloud.platform}` : '';
  return `${app.slice(0, MAX_APPLICATION_NAME - suffix.length)}${suffix}`;
}

/**
 * The `name` of the nearest package.json above `entryScript` that has one (a build's own
 * `dist/package.json` often only sets `type`). None when the entry runs from node_modules: that is a
 * tool (jest, a process manager, a CLI) whose package would name the tool, not the app.
 */
export function packageNameAbove(entryScript: string | undefined): string | undefined {
  if (!entryScript) return undefined;
  const entry = resolve(entryScript);
  if (entry.split(/[\\/]/).includes('node_modules')) return undefined;
  for (let dir = dirname(entry); ; dir = dirname(dir)) {
    const name = readPackageName(join(dir, 'package.json'));
    if (name) return name;
    if (dirname(dir) === dir) return undefined;
  }
}

function readPackageName(file: string): string | undefined {
  try {
    const { name } = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown };
    return typeof name === 'string' && name.trim() ? name.trim() : undefined;
  } catch {
    return undefined; // no package.json here, or not JSON: keep looking further up
  }
}
