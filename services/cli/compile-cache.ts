import module from 'node:module';

/**
 * V8's compile cache for every module loaded after this one (Node 22.1+; on Node 20 there is no
 * such API and this does nothing). edgefl.ts imports it first, so the TensorFlow.js bundles,
 * Express and the rest are compiled from cache on later starts of the same files, where module
 * loading is most of a cold start. The cache lives in NODE_COMPILE_CACHE or the OS temp
 * directory; where that cannot be written, Node just compiles as usual.
 */
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();
