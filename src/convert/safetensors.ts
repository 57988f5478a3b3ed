/**
 * Reading and writing safetensors files without dependencies, in pieces named for what they do: the format's
 * constants (`safetensors/format.ts`), its errors (`errors.ts`), one file's header (`header.ts`), a checkpoint
 * directory read tensor by tensor (`checkpoint.ts`), a small file read whole (`small-file.ts`) and the writer
 * (`write.ts`). This module is their one import for the rest of the code.
 */

export { bf16ToF32, f16ToF32, f32ToBf16Bits, f32ToF16Bits } from '../util/half-float.js';
export { SafetensorsCheckpoint } from './safetensors/checkpoint.js';
export {
  CheckpointError,
  InvalidHeaderError,
  MissingTensorError,
  NoCheckpointError,
  ShapeMismatchError,
  TruncatedFileError,
  UnsupportedDtypeError,
} from './safetensors/errors.js';
export {
  DTYPE_BYTES,
  elementCount,
  FLOAT_DTYPES,
  IO_CHUNK,
  isShape,
  MAX_HEADER_BYTES,
  type TensorInfo,
} from './safetensors/format.js';
export { readSafetensorsHeader, type SafetensorsHeader } from './safetensors/header.js';
export { type LoadedTensor, readSafetensorsFile, type TensorArray } from './safetensors/small-file.js';
export {
  safetensorsFileSize,
  safetensorsHeaderBytes,
  type TensorChunk,
  type TensorDataSource,
  type TensorToWrite,
  type WritableDtype,
  type WriteProgress,
  type WriteSafetensorsOptions,
  writeSafetensors,
} from './safetensors/write.js';
