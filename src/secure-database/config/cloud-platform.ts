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
];

const DATABASE_HOSTS: Array<[RegExp, string]> = [
  [/\.neon\.tech$/i, 'neon'],
  [/\.supabase\.(co|com)$/i, 'supabase'],
  [/\.(rlwy\.net|railway\.internal|railway\.app)$/i, 'railway'],
  [/\.render\.com$/i, 'render'],
  [/\.(flycast|fly\.dev|fly\.io|internal)$/i, 'fly'],
  [/\.amazonaws\.com$/i, 'aws-rds'],
];

export function detectCloud(env: NodeJS.ProcessEnv, host: string): CloudFacts {
  const platform = PLATFORMS.find((p) => env[p.detect]);
  return {
    platform: platform?.name,
    service: platform?.service ? env[platform.service] : undefined,
    databaseProvider: DATABASE_HOSTS.find(([pattern]) => pattern.test(host))?.[1],
  };
}

/** e.g. `my-api@railway`; at most 63 bytes (the server truncates longer names). */
export function defaultApplicationName(cloud: CloudFacts, env: NodeJS.ProcessEnv): string {
  const app = (cloud.service ?? env.npm_package_name ?? 'nestjs').replace(/[^\w.@/-]/g, '_');
  return `${app}${cloud.platform ? `@${cloud.platform}` : ''}`.slice(0, 63);
}
