/** Kubernetes API errors turned into one-line messages that say what to fix (RBAC, namespace, CRDs). */
export const KNATIVE_SERVING = { group: 'serving.knative.dev', version: 'v1', plural: 'services' } as const;
export const KSVC_RESOURCE = `${KNATIVE_SERVING.plural}.${KNATIVE_SERVING.group}`;

export class KubeClientUnavailableError extends Error {}

export function statusCodeOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  // ApiException carries `code`; Watch errors carry `statusCode`. Node errno codes are strings.
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

export function bodyOf(err: unknown): { reason?: string; details?: { name?: string } } | undefined {
  const body = (err as { body?: unknown })?.body;
  if (body && typeof body === 'object') return body as { reason?: string; details?: { name?: string } };
  if (typeof body === 'string') {
    try {
      return JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export class KubeDiscoveryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Maps API failures to messages that say what to fix. A 404 on a *list* means the resource
 * type is not served at all (lists in a missing namespace return 200 with no items).
 */
export function kubeError(err: unknown, resource: string, namespace: string): KubeDiscoveryError {
  if (err instanceof KubeDiscoveryError || err instanceof KubeClientUnavailableError) return err as KubeDiscoveryError;
  const status = statusCodeOf(err);
  if (status === 403) {
    return new KubeDiscoveryError(`RBAC: the service account cannot list ${resource} in ${namespace}`, 403, { cause: err });
  }
  if (status === 404 && resource === KSVC_RESOURCE) {
    return new KubeDiscoveryError(`Knative Serving CRD not installed (the API does not serve ${KSVC_RESOURCE})`, 404, { cause: err });
  }
  if (status === 401) {
    return new KubeDiscoveryError(`unauthorized: the Kubernetes API rejected the credentials (listing ${resource} in ${namespace})`, 401, { cause: err });
  }
  const detail = status ? `HTTP ${status}` : (err as Error)?.message ?? String(err);
  return new KubeDiscoveryError(`Kubernetes API error listing ${resource} in ${namespace}: ${detail}`, status, { cause: err });
}
