import { expect } from 'vitest';
import { httpStatusOf } from '../../services/serving/edge.js';
import { ServingError } from '../../services/serving/errors.js';

/** The domain error `fn` throws, with the HTTP status the edge maps it to. */
export function httpError(fn: () => unknown): { status: number; code: string; message: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ServingError);
    const err = e as ServingError;
    return { status: httpStatusOf(err), code: err.code, message: err.message };
  }
  throw new Error('expected a ServingError');
}

export async function asyncError(p: Promise<unknown>): Promise<{ status: number; code: string; message: string }> {
  return p.then(
    () => {
      throw new Error('expected a ServingError');
    },
    (e: unknown) => httpError(() => {
      throw e;
    }),
  );
}
