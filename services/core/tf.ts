/**
 * The one place edgefl imports TensorFlow.js from. tfjs-node (when installed) registers
 * its backend into this same tfjs-core instance, so every module shares one engine.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';

export { tf, tfl };

// PROD silences tfjs's console banners (we log the chosen backend ourselves) and skips dev-only checks.
tf.env().set('PROD', true);
