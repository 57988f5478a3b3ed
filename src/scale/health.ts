/**
 * The health endpoints of a front or a worker (HEALTH_PORT), for load balancers and service managers:
 * `GET /healthz` is 200 while the process runs; `GET /readyz` is 200 while it takes work and 503 while it starts
 * or drains, each with a small JSON body saying why.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../util/logger.js';

export interface HealthState {
  ready: boolean;
  /** Shown in both bodies: role, model, running jobs, why not ready. */
  details: Record<string, unknown>;
}

export interface HealthServer {
  url: string;
  close(): Promise<void>;
}

export async function startHealthServer(
  host: string,
  port: number,
  state: () => HealthState,
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const current = state();
    const send = (status: number, body: Record<string, unknown>) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') send(405, { error: 'method_not_allowed' });
    else if (path === '/healthz') send(200, { status: 'ok', ...current.details });
    else if (path === '/readyz')
      send(current.ready ? 200 : 503, { ready: current.ready, ...current.details });
    else send(404, { error: 'not_found', endpoints: ['/healthz', '/readyz'] });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(`${host}:${port} is already in use; set HEALTH_PORT to another port`)
          : error,
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The endpoints where HEALTH_PORT asks for them (none without a port), their address logged once. */
export async function startHealthEndpoints(
  where: { host: string; port?: number },
  logger: Pick<Logger, 'info'>,
  state: () => HealthState,
): Promise<HealthServer | undefined> {
  if (where.port === undefined) return undefined;
  const server = await startHealthServer(where.host, where.port, state);
  logger.info(`health endpoints: ${server.url}/healthz and /readyz`);
  return server;
}
