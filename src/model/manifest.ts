/**
 * Reading and validating a converted model dir's `manifest.json`: the converter writes it last, the engine and the
 * bench read it. Both sides of the contract live in the model layer, so the engine never loads the converter.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserFacingError } from '../errors.js';
import {
  MANIFEST_FILE,
  MODEL_FORMAT,
  MODEL_FORMAT_VERSION,
  MODEL_GRAPHS,
  type ModelManifest,
} from './graph-io.js';

export type { ModelManifest } from './graph-io.js';

export type ManifestProblem = 'missing' | 'incomplete' | 'not_a_model' | 'unsupported_version' | 'invalid';

export class ManifestError extends UserFacingError {
  override name = 'ManifestError';
  constructor(
    readonly problem: ManifestProblem,
    message: string,
  ) {
    super(`manifest_${problem}`, message);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks what the engine relies on; returns the problem, or undefined when the manifest is usable. */
function validate(json: unknown, path: string): ManifestError | undefined {
  if (!isObject(json) || json.format !== MODEL_FORMAT) {
    return new ManifestError(
      'not_a_model',
      `${path} is not a blip2-bot model manifest (no "format": "${MODEL_FORMAT}")`,
    );
  }
  if (json.formatVersion !== MODEL_FORMAT_VERSION) {
    return new ManifestError(
      'unsupported_version',
      `${path} has format version ${JSON.stringify(json.formatVersion)}, but this blip2-bot reads version ` +
        `${MODEL_FORMAT_VERSION}; convert the model again with this version (\`blip2-bot convert --force\`)`,
    );
  }
  if (json.complete !== true) {
    return new ManifestError(
      'incomplete',
      `${path} says the conversion did not finish; run \`blip2-bot convert --force\` again`,
    );
  }
  const problems: string[] = [];
  if (typeof json.modelId !== 'string' || json.modelId === '') problems.push('"modelId" must be a string');
  if (!isObject(json.source) || !isObject(json.source.config))
    problems.push('"source.config" must be an object');
  // Manifests written before OPT support have no languageModel: they are FlanT5.
  const languageModel = json.languageModel ?? 't5';
  const graphNames =
    typeof languageModel === 'string' ? MODEL_GRAPHS[languageModel as 't5' | 'opt'] : undefined;
  if (!graphNames)
    problems.push(`"languageModel" must be "t5" or "opt", not ${JSON.stringify(languageModel)}`);
  if (!isObject(json.graphs)) problems.push('"graphs" must be an object');
  else {
    // Each kind of language model has its own graphs (OPT: vision, qformer, opt); only those must be there.
    for (const name of graphNames ?? []) {
      const graph = json.graphs[name];
      if (!isObject(graph) || typeof graph.file !== 'string')
        problems.push(`"graphs.${name}.file" is missing`);
    }
  }
  if (problems.length > 0) {
    return new ManifestError(
      'invalid',
      `${path} is damaged: ${problems.join('; ')}; convert the model again`,
    );
  }
  return undefined;
}

/**
 * The manifest of a finished, readable model dir, or a ManifestError saying what is wrong (no manifest, an
 * unfinished conversion, another format version, missing fields).
 */
export async function loadManifest(modelDir: string): Promise<ModelManifest> {
  const path = join(modelDir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new ManifestError(
      'missing',
      `${modelDir} does not hold a converted blip2-bot model (no ${MANIFEST_FILE}); run \`blip2-bot convert --from <hf-dir> --out ${modelDir}\` or \`blip2-bot models demo\``,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(
      'invalid',
      `${path} is not valid JSON (${(e as Error).message}); convert the model again`,
    );
  }
  const problem = validate(json, path);
  if (problem) throw problem;
  return json as ModelManifest;
}

/** The manifest if the dir holds a finished model this version can read, else undefined (never throws). */
export async function readManifest(modelDir: string): Promise<ModelManifest | undefined> {
  try {
    return await loadManifest(modelDir);
  } catch {
    return undefined;
  }
}
