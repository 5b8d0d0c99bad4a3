import { Readable } from 'node:stream';
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
  StreamableFile,
} from '@nestjs/common';
import { SecureDatabaseError } from '../../index.js';
import type { CreateUserInput, User, UserStatus } from './user.js';
import { type UsersPage, UsersRepository } from './users.repository.js';
import { JoiValidationPipe, createUserSchema, exportQuerySchema, listQuerySchema, updateStatusSchema } from './users.validation.js';

@Controller('users')
export class UsersController {
  private readonly logger = new Logger(UsersController.name);

  constructor(private readonly users: UsersRepository) {}

  @Post()
  @HttpCode(201)
  create(@Body(new JoiValidationPipe(createUserSchema)) body: CreateUserInput): Promise<User> {
    return this.users.create(body);
  }

  /** One page: `?status=active&limit=50&after=<id>`; the response's `next` is the following page's `after`. */
  @Get()
  list(@Query(new JoiValidationPipe(listQuerySchema)) query: { status: UserStatus; limit: number; after?: string }): Promise<UsersPage> {
    return this.users.findPage(query.status, query.limit, query.after);
  }

  /** Every user with the status as NDJSON (one JSON object per line), streamed from the database. */
  @Get('export')
  async export(@Query(new JoiValidationPipe(exportQuerySchema)) query: { status: UserStatus }): Promise<StreamableFile> {
    const users = this.users.streamByStatus(query.status);
    // The first row is read before the response starts, so a database that is down still gets the
    // exception filter's status and body instead of a broken 200.
    const first = await users.next();
    const lines = Readable.from(ndjson(first, users));
    return new StreamableFile(lines, { type: 'application/x-ndjson' })
      .setErrorLogger((error) => this.logger.error(`GET /users/export failed mid-stream: ${error instanceof SecureDatabaseError ? error.code : error.name}`))
      // Headers and rows are out: cut the connection, so the client sees a truncated transfer, not a complete export.
      .setErrorHandler((_error, response) => (response as { destroy(): void }).destroy());
  }

  @Get(':id')
  async get(@Param('id', new ParseUUIDPipe()) id: string): Promise<User> {
    return (await this.users.findById(id)) ?? notFound();
  }

  @Patch(':id/status')
  async setStatus(
    @Param('id', new ParseUUIDPipe()) id: string,
    @Body(new JoiValidationPipe(updateStatusSchema)) body: { status: UserStatus },
  ): Promise<User> {
    return (await this.users.updateStatus(id, body.status)) ?? notFound();
  }
}

async function* ndjson(first: IteratorResult<User>, rest: AsyncGenerator<User>): AsyncGenerator<string> {
  try {
    if (first.done) return;
    yield `${JSON.stringify(first.value)}\n`;
    for await (const user of rest) yield `${JSON.stringify(user)}\n`;
  } finally {
    // Destroyed before its loop began (client gone, HEAD): the rows' generator still holds a connection.
    await rest.return(undefined);
  }
}

function notFound(): never {
  throw new NotFoundException('User not found');
}
