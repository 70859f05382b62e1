/**
 * Bearer-token check on /v1/*, /metrics and /reports/* (health, readiness, the OpenAPI document and
 * the web page stay open). Registered on the root instance (not encapsulated), so it guards the routes
 * of every other plugin.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../api-error';

/** Cookie the web page sets so that report links (plain navigation, no headers) pass the token check. */
export const TOKEN_COOKIE = 'anomaly_spotter_token';

/**
 * The bearer token of a request. The cookie is accepted only for GET /reports (plain links cannot send
 * headers); the API itself wants the header, so a cookie can never authorise a cross-site POST.
 */
function tokenOf(req: FastifyRequest, allowCookie: boolean): string | null {
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    return m ? m[1].trim() : '';
  }
  if (!allowCookie) return null;
  const cookies = req.headers.cookie ?? '';
  for (const c of cookies.split(';')) {
    const [k, ...v] = c.trim().split('=');
    if (k === TOKEN_COOKIE) return decodeURIComponent(v.join('='));
  }
  return null;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

async function auth(app: FastifyInstance, opts: { token: string | null }): Promise<void> {
  const { token } = opts;
  app.addHook('onRequest', async (req) => {
    if (!token) return;
    const path = req.url.split('?')[0];
    if (!(path.startsWith('/v1/') || path === '/metrics' || path.startsWith('/reports'))) return;
    const given = tokenOf(req, req.method === 'GET' && path.startsWith('/reports'));
    if (given === null) {
      throw new ApiError(
        401,
        'UNAUTHORIZED',
        "missing bearer token: send 'Authorization: Bearer <token>' (this server was started with --token or ANOMALY_SPOTTER_TOKEN)",
      );
    }
    if (!sameSecret(given, token)) throw new ApiError(401, 'UNAUTHORIZED', 'invalid bearer token');
  });
}
// Not encapsulated (what fastify-plugin does): the hook applies to the whole server.
Object.assign(auth, { [Symbol.for('skip-override')]: true });

export const authPlugin = auth;
