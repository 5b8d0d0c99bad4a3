import { Module } from '@nestjs/common';
import { UsersController } from './users.controller.js';
import { UsersRepository } from './users.repository.js';
import { UsersSchema } from './users.schema.js';

@Module({ controllers: [UsersController], providers: [UsersSchema, UsersRepository] })
export class UsersModule {}
