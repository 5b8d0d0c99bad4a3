import { Body, Controller, Get, HttpCode, NotFoundException, Param, ParseUUIDPipe, Patch, Post, Query } from '@nestjs/common';
import type { CreateUserInput, User, UserStatus } from './user.js';
import { UsersRepository } from './users.repository.js';
import { JoiValidationPipe, createUserSchema, statusQuerySchema, updateStatusSchema } from './users.validation.js';

@Controller('users')
export class UsersController {
  constructor(private readonly users: UsersRepository) {}

  @Post()
  @HttpCode(201)
  create(@Body(new JoiValidationPipe(createUserSchema)) body: CreateUserInput): Promise<User> {
    return this.users.create(body);
  }

  @Get()
  list(@Query(new JoiValidationPipe(statusQuerySchema)) query: { status: UserStatus }): Promise<User[]> {
    return this.users.findByStatus(query.status);
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

function notFound(): never {
  throw new NotFoundException('User not found');
}
