import { readFile } from 'node:fs/promises';

/**
 * A minimal client for MLflow's REST API 2.0 (tracking) and the `mlflow-artifacts` proxy
 * (`mlflow server --serve-artifacts`, the default since MLflow 2.0). Every call has a timeout, so a
 * hung server can never hold a caller for long. Errors are thrown; policy (retry, warn, give up)
 * belongs to the caller (MlflowSink).
 */

export class MlflowHttpError extends Error {
  constructor(
    message: string,
    /** HTTP status; 0 for network errors and timeouts. */
    readonly status: number,
    /** MLflow's `error_code` (e.g. RESOURCE_DOES_NOT_EXIST) when the server sent one. */
    readonly errorCode?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'MlflowHttpError';
  }

  /** 4xx other than 408/429: the request itself is wrong; sending it again cannot succeed. */
  get permanent(): boolean {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}

export interface MlflowRunInfo {
  runId: string;
  experimentId: string;
  artifactUri: string;
  status: string;
}

export interface MlflowMetric {
  key: string;
  value: number;
  timestamp: number;
  step: number;
}

export interface MlflowClientOptions {
  /** Per request; artifact uploads get `artifactTimeoutMs`. */
  timeoutMs?: number;
  artifactTimeoutMs?: number;
  /** Extra headers (auth); by default taken from MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD. */
  headers?: Record<string, string>;
}

/** Limits of one runs/log-batch request (MLflow docs: 1000 metrics, 100 params, 100 tags). */
export const BATCH_LIMITS = { metrics: 1000, params: 100 } as const;

export class MlflowClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly artifactTimeoutMs: number;
  private readonly headers: Record<string, string>;

  constructor(trackingUri: string, opts: MlflowClientOptions = {}) {
    const url = new URL(trackingUri); // throws on garbage: caller reports it
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new Error(
        `unsupported MLflow tracking URI scheme '${url.protocol}' (only http(s) servers are supported)`,
      );
    }
    this.baseUrl = trackingUri.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.artifactTimeoutMs = opts.artifactTimeoutMs ?? 60_000;
    this.headers = opts.headers ?? authHeadersFromEnv();
  }

  async health(): Promise<boolean> {
    try {
      const res = await fetch(`${this.baseUrl}/health`, { signal: AbortSignal.timeout(this.timeoutMs) });
      return res.ok;
    } catch {
      return false;
    }
  }

  async getOrCreateExperiment(name: string): Promise<string> {
    try {
      const got = await this.call<{ experiment: { experiment_id: string } }>(
        'GET',
        `experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`,
      );
      return got.experiment.experiment_id;
    } catch (err) {
      if (!(err instanceof MlflowHttpError) || err.errorCode !== 'RESOURCE_DOES_NOT_EXIST') throw err;
    }
    try {
      const created = await this.call<{ experiment_id: string }>('POST', 'experiments/create', { name });
      return created.experiment_id;
    } catch (err) {
      // Another worker created it between our get and create.
      if (!(err instanceof MlflowHttpError) || err.errorCode !== 'RESOURCE_ALREADY_EXISTS') throw err;
      const got = await this.call<{ experiment: { experiment_id: string } }>(
        'GET',
        `experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`,
      );
      return got.experiment.experiment_id;
    }
  }

  /** The newest run of the experiment carrying tag `key` = `value`, if any. */
  async findRunByTag(experimentId: string, key: string, value: string): Promise<MlflowRunInfo | null> {
    const res = await this.call<{ runs?: RawRun[] }>('POST', 'runs/search', {
      experiment_ids: [experimentId],
      filter: `tags.\`${key}\` = '${value.replace(/'/g, "\\'")}'`,
      order_by: ['attributes.start_time DESC'],
      max_results: 1,
    });
    const run = res.runs?.[0];
    return run ? toRunInfo(run) : null;
  }

  async createRun(
    experimentId: string,
    runName: string,
    tags: Record<string, string>,
  ): Promise<MlflowRunInfo> {
    const res = await this.call<{ run: RawRun }>('POST', 'runs/create', {
      experiment_id: experimentId,
      run_name: runName,
      start_time: Date.now(),
      tags: Object.entries(tags).map(([key, value]) => ({ key, value })),
    });
    return toRunInfo(res.run);
  }

  async logBatch(
    runId: string,
    batch: { metrics?: MlflowMetric[]; params?: { key: string; value: string }[] },
  ): Promise<void> {
    await this.call('POST', 'runs/log-batch', {
      run_id: runId,
      // JSON has no NaN/Infinity; MLflow's protobuf JSON parser accepts them as strings.
      metrics: (batch.metrics ?? []).map((m) => ({
        ...m,
        value: Number.isFinite(m.value) ? m.value : String(m.value),
      })),
      params: batch.params ?? [],
    });
  }

  async updateRun(runId: string, status: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED'): Promise<void> {
    const body: Record<string, unknown> = { run_id: runId, status };
    if (status !== 'RUNNING') body.end_time = Date.now();
    await this.call('POST', 'runs/update', body);
  }

  /**
   * Uploads through the server's artifact proxy. Works when the run's artifact URI is
   * `mlflow-artifacts:/...` (server started with --serve-artifacts); other stores (s3://, file:) would
   * need their own credentials and SDKs on the training host, which this client deliberately avoids.
   */
  async uploadArtifact(run: MlflowRunInfo, artifactPath: string, data: Uint8Array): Promise<void> {
    const prefix = proxiedArtifactPrefix(run.artifactUri);
    if (prefix === null) {
      throw new MlflowHttpError(
        `run artifact URI '${run.artifactUri}' is not served by the tracking server; start it with --serve-artifacts`,
        400,
        'ARTIFACTS_NOT_PROXIED',
      );
    }
    const rel = artifactPath.split('/').filter(Boolean).map(encodeURIComponent).join('/');
    const url = `${this.baseUrl}/api/2.0/mlflow-artifacts/artifacts/${prefix}/${rel}`;
    await this.send('PUT', url, data, this.artifactTimeoutMs, 'application/octet-stream');
  }

  async uploadArtifactFile(run: MlflowRunInfo, artifactPath: string, file: string): Promise<void> {
    await this.uploadArtifact(run, artifactPath, await readFile(file));
  }

  private async call<T = unknown>(method: 'GET' | 'POST', endpoint: string, body?: unknown): Promise<T> {
    const url = `${this.baseUrl}/api/2.0/mlflow/${endpoint}`;
    const text = await this.send(
      method,
      url,
      body === undefined ? undefined : JSON.stringify(body),
      this.timeoutMs,
    );
    return (text ? JSON.parse(text) : {}) as T;
  }

  private async send(
    method: string,
    url: string,
    body: string | Uint8Array | undefined,
    timeoutMs: number,
    contentType = 'application/json',
  ): Promise<string> {
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { ...this.headers, ...(body === undefined ? {} : { 'content-type': contentType }) },
        // Copy into a plain ArrayBuffer-backed view: fetch's BodyInit excludes SharedArrayBuffer views.
        body: typeof body === 'string' || body === undefined ? body : new Uint8Array(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const reason =
        err instanceof Error && err.name === 'TimeoutError'
          ? `timed out after ${timeoutMs} ms`
          : describe(err);
      throw new MlflowHttpError(`${method} ${redact(url)}: ${reason}`, 0, undefined, { cause: err });
    }
    const text = await res.text();
    if (!res.ok) {
      let errorCode: string | undefined;
      let message = text.slice(0, 300);
      try {
        const parsed = JSON.parse(text) as { error_code?: string; message?: string };
        errorCode = parsed.error_code;
        message = parsed.message ?? message;
      } catch {
        /* not JSON (proxy error page) */
      }
      throw new MlflowHttpError(
        `${method} ${redact(url)}: HTTP ${res.status} ${errorCode ?? ''} ${message}`.trim(),
        res.status,
        errorCode,
      );
    }
    return text;
  }
}

interface RawRun {
  info: { run_id: string; experiment_id: string; artifact_uri: string; status: string };
}

function toRunInfo(run: RawRun): MlflowRunInfo {
  return {
    runId: run.info.run_id,
    experimentId: run.info.experiment_id,
    artifactUri: run.info.artifact_uri,
    status: run.info.status,
  };
}

/** `mlflow-artifacts:/1/abc/artifacts` or `mlflow-artifacts://host:port/1/abc/artifacts` -> `1/abc/artifacts`. */
export function proxiedArtifactPrefix(artifactUri: string): string | null {
  if (!artifactUri.startsWith('mlflow-artifacts:')) return null;
  const rest = artifactUri.slice('mlflow-artifacts:'.length);
  const path = rest.startsWith('//') ? rest.slice(2).replace(/^[^/]*/, '') : rest;
  return path.replace(/^\/+|\/+$/g, '');
}

/** Same environment variables as MLflow's own client. */
function authHeadersFromEnv(): Record<string, string> {
  const token = process.env.MLFLOW_TRACKING_TOKEN;
  if (token) return { authorization: `Bearer ${token}` };
  const user = process.env.MLFLOW_TRACKING_USERNAME;
  const pass = process.env.MLFLOW_TRACKING_PASSWORD;
  if (user && pass) return { authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` };
  return {};
}

/** Drops user:password from a URL before it goes into a message or log line. */
export function redact(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@');
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // fetch wraps the real reason (ECONNREFUSED, ENOTFOUND) in `cause`.
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`;
}
