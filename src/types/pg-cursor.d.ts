// pg-cursor ships no types; what the module uses of it (pg-cursor 2.x).
declare module 'pg-cursor' {
  import type { Submittable } from 'pg';

  export default class Cursor<R = Record<string, unknown>> implements Submittable {
    constructor(text: string, values?: readonly unknown[] | null, config?: { rowMode?: 'array' });
    submit(connection: unknown): void;
    read(rows: number): Promise<R[]>;
    close(): Promise<void>;
    state: string;
    callback?: (error?: Error | null) => void;
    query_timeout?: number;
  }
}
