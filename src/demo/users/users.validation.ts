import { BadRequestException, type PipeTransform } from '@nestjs/common';
import Joi from 'joi';
import { USER_STATUSES } from './user.js';

/** Validates a request part with joi; the 400 names the fields, never echoes the submitted values. */
export class JoiValidationPipe<T> implements PipeTransform<unknown, T> {
  constructor(private readonly schema: Joi.Schema<T>) {}

  transform(value: unknown): T {
    const { value: valid, error } = this.schema.validate(value, { abortEarly: false, stripUnknown: true, errors: { wrap: { label: false } } });
    if (error) throw new BadRequestException(error.details.map((d) => d.message));
    return valid;
  }
}

const status = Joi.string().valid(...USER_STATUSES).messages({ 'any.only': '{{#label}} must be one of {{#valids}}' });

export const createUserSchema = Joi.object({
  email: Joi.string().trim().lowercase().email({ tlds: false }).max(254).required(),
  name: Joi.string().trim().min(1).max(200).required(),
}).required();

export const updateStatusSchema = Joi.object({ status: status.required() }).required();

export const PAGE_SIZE = { default: 50, max: 200 };

export const listQuerySchema = Joi.object({
  status: status.default('active'),
  limit: Joi.number().integer().min(1).max(PAGE_SIZE.max).default(PAGE_SIZE.default),
  after: Joi.string().guid(),
});

export const exportQuerySchema = Joi.object({ status: status.default('active') });
