// The README's tenant recipe ("Tenants: Row-Level Security with per-request settings"), as it is
// tested: an auth guard that verifies the caller (here an HMAC-signed token standing in for your JWT
// or session check) and an interceptor that runs the handler inside db.withSettings with the tenant
// of the *verified* identity, never a raw header.
import { createHmac, timingSafeEqual } from 'node:crypto';
import {
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  Injectable,
  type NestInterceptor,
  UnauthorizedException,
} from '@nestjs/common';
import { type Observable, from, lastValueFrom } from 'rxjs';
import { DatabaseService } from '../../src/index.js';

interface AuthenticatedRequest {
  headers: Record<string, string | undefined>;
  user?: { tenantId: string };
}

/** Stands in for your authentication (passport-jwt, a session): sets request.user from a verified token only. */
@Injectable()
export class TokenGuard implements CanActivate {
  static secret = 'test-only-secret';

  static tokenFor(tenantId: string): string {
    return `${tenantId}.${createHmac('sha256', TokenGuard.secret).update(tenantId).digest('hex')}`;
  }

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const [tenantId, signature = ''] = (request.headers.authorization ?? '').replace(/^Bearer /, '').split('.');
    const expected = createHmac('sha256', TokenGuard.secret).update(tenantId ?? '').digest();
    const given = Buffer.from(signature, 'hex');
    if (!tenantId || given.length !== expected.length || !timingSafeEqual(given, expected)) throw new UnauthorizedException();
    request.user = { tenantId };
    return true;
  }
}

/** Every statement the handler runs (through any DatabaseService) carries app.tenant_id of the verified user. */
@Injectable()
export class TenantSettingsInterceptor implements NestInterceptor {
  constructor(private readonly db: DatabaseService) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const { user } = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (!user) throw new UnauthorizedException(); // guards run before interceptors: no user, no tenant
    return from(this.db.withSettings({ 'app.tenant_id': user.tenantId }, () => lastValueFrom(next.handle(), { defaultValue: undefined })));
  }
}
