/** Public API of the blip2-bot package. */

export {
  type ConvertModelOptions,
  type ConvertModelSummary,
  convertModel,
} from './calibrate/convert-model.js';
export { formatReport } from './calibrate/report.js';
export {
  ConvertError,
  type ConvertOptions,
  type ConvertSummary,
  convertCheckpoint,
  readManifest,
} from './convert/convert.js';
export { writeSyntheticCheckpoint, writeTinyCheckpoint } from './convert/synthetic.js';
export { DEFAULT_DEMO_DIR, ensureDemoModel } from './demo/demo-model.js';
export type {
  GenerateRequest,
  GenerateResult,
  GenerationOptions,
  ImageQuestionEngine,
  Task,
  Timings,
  Turn,
} from './engine/api.js';
export { Blip2Engine, type EngineOptions } from './engine/engine.js';
export {
  ImageError,
  InputError,
  QueueFullError,
  RequestAbortedError,
  RequestTimeoutError,
} from './engine/errors.js';
export { readImageFile } from './engine/image-file.js';
export { Blip2Model } from './engine/model.js';
export { PREPROCESS_VERSION, parsePreprocessorConfig, preprocessImage } from './engine/preprocess.js';
export { EngineStoppedError, ThreadedEngine } from './engine/threaded-engine.js';
export { loadTokenizer } from './engine/tokenizer.js';
export { UserFacingError } from './errors.js';
export { type Blip2Config, resolveBlip2Config } from './model/config.js';
export * from './model/graph-io.js';
export * from './model/precision.js';
export { FileReadError, type FileReadProblem } from './util/read-capped-file.js';
