// pg's helpers (no types shipped for the file); what copy/ uses of it (pg 8.x).
declare module 'pg/lib/utils.js' {
  const utils: { prepareValue(value: unknown): string | Buffer | null };
  export default utils;
}
