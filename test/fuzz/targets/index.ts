import type { Target } from '../harness.js';
import { multipart } from './multipart.js';
import { part10 } from './part10.js';
import { qido } from './qido.js';
import { readHeader } from './read-header.js';
import { viewerToken } from './viewer-token.js';

/** Every fuzz target, by name. */
export const TARGETS: Array<Target<any>> = [part10, readHeader, multipart, qido, viewerToken];
