import type { ServerResponse } from 'node:http';
import {
  Body,
  Controller,
  Get,
  HttpCode,
  Logger,
  NotFoundException,
  Param,
  ParseUUIDPipe,
  Patch,
  Post,
  Query,
  Res,
} from '@nestjs/common';
import { RequestSignal, SecureDatabaseError } from '../../index.js';
import type { CreateUserInput, User, UserStatus } from './user.js';
import { type UsersPage, UsersRepository } from './users.repository.js';
import { JoiValidationPipe, createUserSchema, exportQuerySchema, listQuerySchema, updateStatusSchema } from './users.validation.js';

@Controller('users')
export class UsersController {
  private readonly logger = new Logger(UsersController.name);

  constructor(private readonly users: UsersRepository) {}

  @Post()
  @HttpCode(201)
  create(@Body(new JoiValidationPipe(createUserSchema)) body: CreateUserInput, @RequestSignal() signal: AbortSignal): Promise<User> {
    return this.users.create(body, signal);
  }

  /** One page: `?status=active&limit=50&after=<id>`; the response's `next` is the following page's `after`. */
  @Get()
  list(
    @Query(new JoiValidationPipe(listQuerySchema)) query: { status: UserStatus; limit: number; after?: string },
    @RequestSignal() signal: AbortSignal,
  ): Promise<UsersPage> {
    return this.users.findPage(query.status, query.limit, query.after, signal);
  }

  /**
   * Every user with the status as NDJSON (one JSON object per line), streamed from the database. A
   * client that stops reading is let go: once the socket's buffers are full and stay full for the
   * stream's idle deadline, the export ends (its connection goes back to the pool) and the response
   * is destroyed, so a few stalled downloads cannot hold the pool.
   */
  @Get('export')
  async export(
    @Query(new JoiValidationPipe(exportQuerySchema)) query: { status: UserStatus },
    @Res() res: ServerResponse,
    @RequestSignal() signal: AbortSignal,
  ): Promise<void> {
    // A client that disconnects ends the export at once (its cursor closed, or its batch cancelled on the server).
    const users = this.users.streamByStatus(query.status, signal);
    try {
      // The first row is read before the response starts, so a database that is down still gets the
      // exception filter's status and body instead of a broken 200.
      const first = await users.next();
      res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
      const idleMs = this.users.exportIdleTimeoutMs;
      try {
        if (!first.done) {
          await send(res, first.value, idleMs);
          for await (const user of users) await send(res, user, idleMs);
        }
        res.end();
      } catch (error) {
        if (error instanceof ClientStalled) this.logger.warn(`GET /users/export stopped: ${error.message}`);
        else if (!(error instanceof ClientGone)) this.logger.error(`GET /users/export failed mid-stream: ${error instanceof SecureDatabaseError ? error.code : (error as Error).name}`);
        // Headers and rows are out: cut the connection, so the client sees a truncated transfer, not a complete export.
        res.destroy();
      }
    } finally {
      // Ended before its loop (first row only, an empty result, an error): the rows' generator still holds a connection.
      await users.return(undefined);
    }
  }

  @Get(':id')
  async get(@Param('id', new ParseUUIDPipe()) id: string, @RequestSignal() signal: AbortSignal): Promise<User> {
    return (await this.users.findById(id, signal)) ?? notFound();
  }

  @Patch(':id/status')
  async setStatus(
    @Param('id', new ParseUUIDPipe()) id: string,
    @Body(new JoiValidationPipe(updateStatusSchema)) body: { status: UserStatus },
    @RequestSignal() signal: AbortSignal,
  ): Promise<User> {
    return (await this.users.updateStatus(id, body.status, signal)) ?? notFound();
  }
}

class ClientGone extends Error {}
class ClientStalled extends Error {}

/** Writes one row; when the socket's buffers are full, waits for them to drain, at most `idleMs`. */
async function send(res: ServerResponse, user: User, idleMs: number): Promise<void> {
  if (res.destroyed) throw new ClientGone();
  if (res.write(`${JSON.stringify(user)}\n`)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer);
      res.off('drain', onDrain).off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new ClientGone());
    const timer = setTimeout(() => done(new ClientStalled(`the client read nothing for ${idleMs} ms`)), idleMs);
    res.on('drain', onDrain).on('close', onClose);
  });
}

function notFound(): never {
  throw new NotFoundException('User not found');
}
