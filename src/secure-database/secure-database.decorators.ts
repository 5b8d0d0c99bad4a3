import { Inject } from '@nestjs/common';
import { getDatabaseServiceToken, getPoolToken } from './secure-database.utils.js';

/** Injects the raw pg.Pool. Prefer DatabaseService: raw clients skip error mapping and shutdown gating. */
export const InjectPool = (name?: string): ParameterDecorator & PropertyDecorator => Inject(getPoolToken(name));

/** Injects the DatabaseService of a named connection (the default one injects by type). */
export const InjectDatabase = (name?: string): ParameterDecorator & PropertyDecorator => Inject(getDatabaseServiceToken(name));
