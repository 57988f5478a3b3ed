export { BeamHypotheses, type Hypothesis } from './beam-hypotheses.js';
export {
  type DecoderStepper,
  type GenerationHooks,
  type GenerationResult,
  generateTokens,
} from './generate.js';
export {
  createLogitsProcessors,
  createLogitsWarpers,
  kthLargest,
  type LogitsProcessor,
  MinNewTokensProcessor,
  NoRepeatNgramProcessor,
  RepetitionPenaltyProcessor,
  TemperatureWarper,
  TopKWarper,
  TopPWarper,
} from './logits-processors.js';
export {
  GENERATION_LIMITS,
  type ResolvedGenerationOptions,
  resolveGenerationOptions,
  type SpecialTokenIds,
  TASK_GENERATION_DEFAULTS,
} from './options.js';
export { TokenHistory } from './token-history.js';
