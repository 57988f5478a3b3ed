/** The errors about a checkpoint's files or contents, each a one-line message that names the file and tensor. */
import { UserFacingError } from '../../errors.js';
import { FLOAT_DTYPES, INDEX_FILE, SINGLE_FILE } from './format.js';

/** Base class of every error about a checkpoint's files or contents. */
export class CheckpointError extends UserFacingError {
  override name = 'CheckpointError';
  constructor(
    message: string,
    readonly file?: string,
    readonly tensor?: string,
    options?: { cause?: unknown },
  ) {
    super('checkpoint', message, options);
  }
}

export class NoCheckpointError extends CheckpointError {
  override name = 'NoCheckpointError';
  constructor(readonly dir: string) {
    super(
      `no safetensors checkpoint in ${dir}: expected ${SINGLE_FILE}, ${INDEX_FILE} with its shards, or a single *.safetensors file (PyTorch .bin checkpoints are not supported; download the safetensors files)`,
      dir,
    );
  }
}

export class MissingTensorError extends CheckpointError {
  override name = 'MissingTensorError';
  constructor(tensor: string, where: string) {
    super(
      `tensor "${tensor}" is not in ${where}; the checkpoint may not be a Blip2ForConditionalGeneration (BLIP-2 with a T5/FlanT5 language model) saved by Hugging Face transformers`,
      where,
      tensor,
    );
  }
}

export class ShapeMismatchError extends CheckpointError {
  override name = 'ShapeMismatchError';
  constructor(
    tensor: string,
    file: string,
    readonly actual: readonly number[],
    readonly expected: readonly number[],
  ) {
    super(
      `tensor "${tensor}" in ${file} has shape [${actual.join(', ')}] but config.json implies [${expected.join(', ')}]; config.json and the weights do not belong together`,
      file,
      tensor,
    );
  }
}

export class UnsupportedDtypeError extends CheckpointError {
  override name = 'UnsupportedDtypeError';
  constructor(
    tensor: string,
    file: string,
    readonly dtype: string,
  ) {
    super(
      `tensor "${tensor}" in ${file} has dtype ${dtype}; only ${FLOAT_DTYPES.join(', ')} weights are supported`,
      file,
      tensor,
    );
  }
}

export class TruncatedFileError extends CheckpointError {
  override name = 'TruncatedFileError';
  constructor(
    file: string,
    readonly expectedBytes: number,
    readonly actualBytes: number,
    tensor?: string,
  ) {
    super(
      `${file} is truncated: its header says the data ends at byte ${expectedBytes}${tensor ? ` (tensor "${tensor}")` : ''} but the file has ${actualBytes} bytes; the download was probably interrupted, fetch the file again`,
      file,
      tensor,
    );
  }
}

export class InvalidHeaderError extends CheckpointError {
  override name = 'InvalidHeaderError';
  constructor(file: string, problem: string, tensor?: string) {
    super(`${file} is not a valid safetensors file: ${problem}`, file, tensor);
  }
}
