import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import type { GraphSignature, GraphTensorSpec } from '../../model/graph-io.js';
import {
  type AttributeValue,
  type Dim,
  encodeModel,
  type ModelData,
  type NodeData,
  TensorDataType,
  type TensorDataTypeCode,
  type TensorProtoData,
  type ValueInfo,
} from './proto.js';

export { TensorDataType };

/** Tensors at least this large go to the external data file; protobuf cannot hold more than 2 GB inline. */
const INLINE_LIMIT_BYTES = 1024;
/** Large tensors start on a page boundary so onnxruntime can map them without copying. */
const PAGE_ALIGN = 4096;
const SMALL_ALIGN = 64;

export const OPSET = 17;
export const MS_DOMAIN = 'com.microsoft';
const IR_VERSION = 8;

const ELEM_TYPES: Record<GraphTensorSpec['type'], TensorDataTypeCode> = {
  float32: TensorDataType.FLOAT,
  int64: TensorDataType.INT64,
};

type WeightData = Float32Array | Uint8Array | BigInt64Array | Int32Array | Int8Array;

function dataTypeOf(data: WeightData): TensorDataTypeCode {
  if (data instanceof Float32Array) return TensorDataType.FLOAT;
  if (data instanceof BigInt64Array) return TensorDataType.INT64;
  if (data instanceof Int32Array) return TensorDataType.INT32;
  if (data instanceof Int8Array) return TensorDataType.INT8;
  return TensorDataType.UINT8;
}

export type AttrInput = number | string | number[] | { floats: number[] } | { float: number };

function toAttribute(value: AttrInput): AttributeValue {
  if (typeof value === 'string') return { kind: 'string', value };
  if (typeof value === 'number') return { kind: 'int', value };
  if (Array.isArray(value)) return { kind: 'ints', value };
  if ('floats' in value) return { kind: 'floats', value: value.floats };
  return { kind: 'float', value: value.float };
}

export interface OpOptions {
  domain?: string;
  /** Number of outputs (named `<node>/output_<i>`), or explicit output names. */
  outputs?: number | string[];
}

/**
 * Builds one ONNX graph op by op. Node names mirror the checkpoint (`/vision/layers.3/attn/qkv/MatMul`) so a
 * graph reads well in a viewer; weights are written to the external data file as soon as they are added, so
 * converting a large checkpoint holds one tensor at a time.
 */
export class GraphBuilder {
  private readonly nodes: NodeData[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly initializers: TensorProtoData[] = [];
  private readonly usedNodeNames = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private readonly externalIndex = new Map<string, { offset: number; length: number }>();
  private signature: GraphSignature | undefined;
  private dataFd: number | undefined;
  private dataOffset = 0;
  parameters = 0;

  constructor(
    readonly name: string,
    private readonly dataPath: string,
  ) {}

  get externalBytes(): number {
    return this.dataOffset;
  }

  input(name: string, elemType: TensorDataTypeCode, dims: Dim[], doc?: string): string {
    this.inputs.push({ name, elemType, dims, ...(doc ? { doc } : {}) });
    return name;
  }

  /**
   * The graph's public inputs and outputs come from `signature` (src/model/graph-io.ts), the description the
   * engine checks sessions against: `signatureInput`/`signatureOutput` take dtype and dims from it, and `finish`
   * refuses a graph that misses one of them or has an input it lacks. Other outputs (calibration taps) stay possible.
   */
  useSignature(signature: GraphSignature): void {
    this.signature = signature;
  }

  signatureInput(name: string): string {
    const spec = this.specOf('inputs', name);
    return this.input(name, ELEM_TYPES[spec.type], spec.dims);
  }

  signatureOutput(name: string, source: string): void {
    const spec = this.specOf('outputs', name);
    this.output(name, source, ELEM_TYPES[spec.type], spec.dims);
  }

  private specOf(kind: 'inputs' | 'outputs', name: string): GraphTensorSpec {
    if (!this.signature) throw new Error(`graph ${this.name}: ${kind} from a signature before useSignature`);
    const spec = this.signature[kind].find((s) => s.name === name);
    if (!spec) throw new Error(`graph ${this.name}: ${name} is not among the signature's ${kind}`);
    return spec;
  }

  output(name: string, source: string, elemType: TensorDataTypeCode, dims: Dim[]): void {
    // Graph outputs carry public names; an Identity keeps node output names readable inside the graph.
    this.op(`/outputs/${name}`, 'Identity', [source], {}, { outputs: [name] });
    this.outputs.push({ name, elemType, dims });
  }

  /** Adds a weight initializer, written to the external data file when large. */
  weight(name: string, data: WeightData, dims: number[], countAsParameters = true): string {
    return this.typedWeight(name, data, dims, dataTypeOf(data), countAsParameters);
  }

  /** Adds a float16 weight from its raw bits (quantised T5 graphs keep their token embeddings in fp16). */
  float16Weight(name: string, bits: Uint16Array, dims: number[]): string {
    return this.typedWeight(name, bits, dims, TensorDataType.FLOAT16, true);
  }

  private typedWeight(
    name: string,
    data: WeightData | Uint16Array,
    dims: number[],
    dataType: TensorDataTypeCode,
    countAsParameters: boolean,
  ): string {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const tensor: TensorProtoData = { name, dataType, dims };
    if (bytes.length < INLINE_LIMIT_BYTES) {
      tensor.raw = bytes.slice();
    } else {
      tensor.external = this.appendExternal(bytes);
      this.externalIndex.set(name, { offset: tensor.external.offset, length: tensor.external.length });
    }
    this.initializers.push(tensor);
    if (countAsParameters) this.parameters += data.length;
    return name;
  }

  /** A small int64 constant, deduplicated by value. */
  int64(values: readonly number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    const cached = this.constCache.get(key);
    if (cached) return cached;
    const name = `/const/int64_${this.constCache.size}`;
    this.weight(name, BigInt64Array.from(values.map((v) => BigInt(v))), dims, false);
    this.constCache.set(key, name);
    return name;
  }

  /** A small float32 constant, deduplicated by value. */
  float(values: readonly number[], dims: number[] = []): string {
    const key = `f32:${dims.join('x')}:${values.join(',')}`;
    const cached = this.constCache.get(key);
    if (cached) return cached;
    const name = `/const/float_${this.constCache.size}`;
    this.weight(name, Float32Array.from(values), dims, false);
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node; returns its output names. */
  opN(
    nodeName: string,
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrInput> = {},
    options: OpOptions = {},
  ): string[] {
    if (this.usedNodeNames.has(nodeName)) throw new Error(`duplicate node name ${nodeName}`);
    this.usedNodeNames.add(nodeName);
    const outputs =
      typeof options.outputs === 'object'
        ? options.outputs
        : Array.from({ length: options.outputs ?? 1 }, (_, i) => `${nodeName}/output_${i}`);
    const attributes: Record<string, AttributeValue> = {};
    for (const [k, v] of Object.entries(attrs)) attributes[k] = toAttribute(v);
    this.nodes.push({
      name: nodeName,
      opType,
      inputs,
      outputs,
      attributes,
      ...(options.domain ? { domain: options.domain } : {}),
    });
    return outputs;
  }

  /** Adds a single-output node; returns its output name. */
  op(
    nodeName: string,
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrInput> = {},
    options: OpOptions = {},
  ): string {
    return this.opN(nodeName, opType, inputs, attrs, options)[0]!;
  }

  private appendExternal(bytes: Uint8Array): { location: string; offset: number; length: number } {
    if (this.dataFd === undefined) this.dataFd = openSync(this.dataPath, 'w');
    const align = bytes.length >= PAGE_ALIGN ? PAGE_ALIGN : SMALL_ALIGN;
    const pad = (align - (this.dataOffset % align)) % align;
    if (pad > 0) {
      writeSync(this.dataFd, new Uint8Array(pad));
      this.dataOffset += pad;
    }
    const offset = this.dataOffset;
    let written = 0;
    while (written < bytes.length) {
      written += writeSync(this.dataFd, bytes, written, bytes.length - written);
    }
    this.dataOffset += bytes.length;
    return { location: basename(this.dataPath), offset, length: bytes.length };
  }

  /** Serialises the graph; closes the data file. Returns the model bytes. */
  finish(doc: string, metadata: Record<string, string> = {}): Uint8Array {
    if (this.signature) {
      const declared = new Set([...this.inputs, ...this.outputs].map((v) => v.name));
      const missing = [...this.signature.inputs, ...this.signature.outputs].filter(
        (s) => !declared.has(s.name),
      );
      if (missing.length > 0)
        throw new Error(`graph ${this.name} never declares ${missing.map((s) => s.name).join(', ')}`);
      // Extra outputs are allowed (calibration taps); an extra input would be one the engine never feeds.
      const expected = new Set(this.signature.inputs.map((s) => s.name));
      const extra = this.inputs.filter((v) => !expected.has(v.name));
      if (extra.length > 0)
        throw new Error(
          `graph ${this.name} declares inputs its signature lacks: ${extra.map((v) => v.name).join(', ')}`,
        );
    }
    if (this.dataFd !== undefined) {
      closeSync(this.dataFd);
      this.dataFd = undefined;
    }
    const usesContrib = this.nodes.some((n) => n.domain === MS_DOMAIN);
    const model: ModelData = {
      irVersion: IR_VERSION,
      opsets: [{ domain: '', version: OPSET }, ...(usesContrib ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
      producerName: 'blip2-bot',
      producerVersion: '1',
      doc,
      metadata,
      graph: {
        name: this.name,
        nodes: this.nodes,
        inputs: this.inputs,
        outputs: this.outputs,
        initializers: this.initializers,
      },
    };
    return encodeModel(model);
  }

  /** Where an initializer's bytes lie in the external data file (calibration reads weights back from there). */
  externalLocation(name: string): { offset: number; length: number } | undefined {
    return this.externalIndex.get(name);
  }

  /** Whether any weight went to the external data file. */
  get hasExternalData(): boolean {
    return this.dataOffset > 0;
  }
}
