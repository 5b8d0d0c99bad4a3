import { describe, expect, it } from '@jest/globals';
import { deploymentSignal } from './embedded-database.js';

describe('deploymentSignal: where the demo never starts an embedded database', () => {
  it.each([
    [{ RAILWAY_ENVIRONMENT: 'production' }, 'platform railway'],
    [{ RENDER: 'true' }, 'platform render'],
    [{ FLY_APP_NAME: 'api' }, 'platform fly'],
    [{ SPACE_ID: 'org/space' }, 'platform huggingface-spaces'],
    [{ NODE_ENV: 'production' }, 'NODE_ENV=production'],
    [{ K_SERVICE: 'api' }, expect.stringMatching(/K_SERVICE|cloud-run/)],
    [{ KUBERNETES_SERVICE_HOST: '10.0.0.1' }, 'KUBERNETES_SERVICE_HOST'],
    [{ AWS_EXECUTION_ENV: 'AWS_ECS_FARGATE' }, 'AWS_EXECUTION_ENV'],
    [{ WEBSITE_SITE_NAME: 'api' }, expect.stringMatching(/WEBSITE_SITE_NAME|azure/)],
  ])('%j is deployed (%s)', (env, signal) => {
    expect(deploymentSignal(env)).toEqual(signal);
  });

  it.each([{}, { NODE_ENV: 'development' }, { HOME: '/home/dev', PATH: '/usr/bin' }])('%j is a developer machine', (env) => {
    expect(deploymentSignal(env)).toBeUndefined();
  });
});
