/** Stops the shared clusters and removes their directory (the orphan reaper covers a killed run). */
export default async function globalTeardown(): Promise<void> {
  await globalThis.__SECURE_PG_HARNESS__?.stop();
}
