import { InvalidQueryError } from '../errors/query.errors.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { DEFAULT_CONNECTION_NAME } from '../secure-database.constants.js';
import type { DatabaseService } from './database.service.js';
import { type TransactionOptions, planTransaction } from './transaction-options.js';
import { insideTransactionOf } from './transaction-scope.js';

export interface TransactionalOptions extends TransactionOptions {
  /** The SecureDatabaseModule connection (its `name`) whose transaction the method runs in. Default: the default connection. */
  connection?: string;
}

interface RunningService {
  service: DatabaseService;
  db: DatabasePool;
}

// The services of the connections running in this process, by connection name: a decorator has no
// injector to ask. Usually one per name; several when one process runs several apps (tests).
const running = new Map<string, Set<RunningService>>();

/** @internal Called by the module once a connection is up, so @Transactional() can find its service. */
export function registerTransactionalService(name: string | undefined, service: DatabaseService, db: DatabasePool): void {
  const key = name ?? DEFAULT_CONNECTION_NAME;
  if (!running.has(key)) running.set(key, new Set());
  running.get(key)!.add({ service, db });
}

/** @internal Called by the module after its pool drained. */
export function unregisterTransactionalService(name: string | undefined, service: DatabaseService): void {
  const key = name ?? DEFAULT_CONNECTION_NAME;
  const services = running.get(key);
  for (const entry of services ?? []) if (entry.service === service) services!.delete(entry);
  if (services?.size === 0) running.delete(key);
}

function transactionalService(connection: string | undefined): DatabaseService {
  const name = connection ?? DEFAULT_CONNECTION_NAME;
  const candidates = [...(running.get(name) ?? [])];
  if (candidates.length === 1) return candidates[0].service;
  // Several apps in one process: the one whose transaction the caller is already in, if any.
  const joined = candidates.filter((c) => insideTransactionOf(c.db));
  if (joined.length === 1) return joined[0].service;
  if (candidates.length === 0) {
    throw new InvalidQueryError(
      `@Transactional() found no running SecureDatabaseModule connection named '${name}': import SecureDatabaseModule.forRoot (with that name) in the app, and call the method once the app is initialised`,
    );
  }
  throw new InvalidQueryError(
    `@Transactional() found ${candidates.length} running SecureDatabaseModule connections named '${name}' in this process and cannot tell which one this call belongs to: give the connections distinct names, or call db.transaction() on the injected DatabaseService`,
  );
}

type MetadataReflect = typeof Reflect & {
  getOwnMetadataKeys?(target: object): unknown[];
  getOwnMetadata?(key: unknown, target: object): unknown;
  defineMetadata?(key: unknown, value: unknown, target: object): void;
};

/**
 * Runs the decorated method in `db.transaction()` of the default connection's DatabaseService (or
 * of `options.connection`), with the options of transaction(). The method queries through the
 * service as usual: its calls join the transaction. Called inside a transaction of the same
 * connection (another @Transactional method, or a db.transaction callback) it is a nested
 * transaction, a savepoint: its isolation level and readOnly may only repeat the outermost's, and
 * it never retries on its own. The outermost reruns the whole method on a serialization failure or
 * deadlock (retries), so the method must be safe to run again. The method's result is a promise.
 *
 *   @Transactional({ isolationLevel: 'serializable' })
 *   async transfer(from: number, to: number, amount: number) { … this.db.execute(…) … }
 */
export function Transactional(options: TransactionalOptions = {}): MethodDecorator {
  const { connection, ...transactionOptions } = options;
  // Bad options fail when the class is defined, not on the first call.
  planTransaction(transactionOptions);
  if (connection !== undefined && (typeof connection !== 'string' || connection === '')) {
    throw new InvalidQueryError('@Transactional() connection must be the name given to SecureDatabaseModule.forRoot');
  }
  return (_target, _key, descriptor: PropertyDescriptor) => {
    const method: unknown = descriptor.value;
    if (typeof method !== 'function') throw new InvalidQueryError('@Transactional() decorates methods only');
    // async: a connection that cannot be found is a rejection, as any failure of the method.
    const transactional = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
      return transactionalService(connection).transaction(async () => method.apply(this, args), transactionOptions);
    };
    Object.defineProperty(transactional, 'name', { value: method.name });
    // Metadata other decorators put on the method (Nest's route and guard decorators) stays on it.
    const reflect = Reflect as MetadataReflect;
    for (const key of reflect.getOwnMetadataKeys?.(method) ?? []) reflect.defineMetadata!(key, reflect.getOwnMetadata!(key, method), transactional);
    descriptor.value = transactional;
    return descriptor;
  };
}
