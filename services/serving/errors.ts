/**
 * The serving domain's errors. The predictor and the input readers throw these; only the
 * protocol adapters (tfserving.ts, oip.ts, upload.ts) turn them into HTTP statuses and
 * each protocol's error body, through `httpStatusOf` in edge.ts.
 */
export class ServingError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** The model name is not one this function serves. */
export class ModelNotFound extends ServingError {
  constructor(readonly model: string, served: string) {
    super('model_not_found', `model '${model}' is not served here; try '${served}'`);
  }
}

/** A version was asked for by name, and it is not the one loaded. */
export class VersionNotLoaded extends ServingError {
  constructor(readonly model: string, readonly version: string, loaded: string | undefined) {
    super('version_not_loaded', `version '${version}' of model '${model}' is not loaded here${loaded ? `; version '${loaded}' is` : ''}`);
  }
}

/** No model is loaded yet (KServe's contract: not ready, and inference answers 503). */
export class ModelNotReady extends ServingError {
  readonly retryAfterS = 5;
  constructor() {
    super('model_not_ready', 'no model version is loaded yet; retry once a version has been published');
  }
}

/** The request is malformed or asks for something this server refuses (a clear 400). */
export class InvalidInput extends ServingError {}

/** The request is legal in form but over a size limit. */
export class TooLarge extends ServingError {}

/** The body is not a media type the route reads. */
export class UnsupportedMedia extends ServingError {}

/** Accepting the request would take the function over its memory budget: retry later. */
export class Overloaded extends ServingError {
  constructor(message: string, readonly retryAfterS = 1) {
    super('overloaded', message);
  }
}
