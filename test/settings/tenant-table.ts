import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';

/**
 * The README's tenant recipe: a table owned by another role than the app's (so its policies apply to
 * the app), row-level security enabled and forced, and a policy that reads app.tenant_id with
 * missing_ok: no setting (or an empty one) matches no row, and refuses every insert.
 */
export const TENANT_TABLE_SQL = `
  CREATE TABLE IF NOT EXISTS tenant_rows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id int NOT NULL,
    caller int NOT NULL
  );
  ALTER TABLE tenant_rows ENABLE ROW LEVEL SECURITY;
  ALTER TABLE tenant_rows FORCE ROW LEVEL SECURITY;
  DROP POLICY IF EXISTS tenant_isolation ON tenant_rows;
  CREATE POLICY tenant_isolation ON tenant_rows
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::int)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::int);
  -- An escape no text check can see: the session-level set_config is inside a function's body.
  CREATE OR REPLACE FUNCTION become_tenant(tenant text) RETURNS text LANGUAGE sql AS $$ SELECT set_config('app.tenant_id', tenant, false) $$;
`;

/** Creates the tenant table as the superuser (its owner) in the cluster's database, for `appRole`, with `rowsPerTenant` rows for tenants 1..`tenants`. */
export async function createTenantTable(cluster: LocalPostgresCluster, appRole: string, tenants: number, rowsPerTenant: number): Promise<void> {
  await cluster.withSuperuser(async (admin) => {
    await admin.query(TENANT_TABLE_SQL);
    await admin.query(`GRANT SELECT, INSERT ON tenant_rows TO ${admin.escapeIdentifier(appRole)}`);
    await admin.query('TRUNCATE tenant_rows');
    await admin.query('INSERT INTO tenant_rows (tenant_id, caller) SELECT t, 0 FROM generate_series(1, $1::int) t, generate_series(1, $2::int)', [tenants, rowsPerTenant]);
  }, cluster.facts.database);
}
