/**
 * Writing ONNX ModelProto bytes with protobufjs: the schema subset, node/tensor helpers and the model
 * envelope shared by the inference export (onnx-export.ts) and the training graphs (onnx-train-graph.ts).
 */
import protobuf from 'protobufjs';

/**
 * The subset of onnx/onnx.proto (proto2, upstream field numbers) that an inference graph needs.
 * Fields we never write are omitted: protobuf decoders skip nothing and miss nothing for absent fields.
 */
const ONNX_PROTO = `
syntax = "proto2";
package onnx;
message AttributeProto {
  enum AttributeType { UNDEFINED = 0; FLOAT = 1; INT = 2; STRING = 3; TENSOR = 4; GRAPH = 5; FLOATS = 6; INTS = 7; STRINGS = 8; }
  optional string name = 1;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  repeated float floats = 7;
  repeated int64 ints = 8;
  optional AttributeType type = 20;
}
message ValueInfoProto {
  optional string name = 1;
  optional TypeProto type = 2;
}
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  repeated AttributeProto attribute = 5;
  optional string domain = 7;
}
message ModelProto {
  optional int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional GraphProto graph = 7;
}
message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
}
message TensorProto {
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  optional string name = 8;
  optional bytes raw_data = 9;
}
message TensorShapeProto {
  message Dimension {
    oneof value { int64 dim_value = 1; string dim_param = 2; }
  }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor {
    optional int32 elem_type = 1;
    optional TensorShapeProto shape = 2;
  }
  oneof value { Tensor tensor_type = 1; }
}
message OperatorSetIdProto {
  optional string domain = 1;
  optional int64 version = 2;
}
`;

const root = protobuf.parse(ONNX_PROTO, { keepCase: true }).root;
const ModelProto = root.lookupType('onnx.ModelProto');

/** onnx TensorProto.DataType values. */
const FLOAT = 1;
const INT64 = 7;
/** onnx AttributeProto.AttributeType values. */
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_INTS = 7;

/** Opset 17 (ONNX 1.12): every op used here exists unchanged since; IR version 8 goes with it. */
export const ONNX_OPSET = 17;
const IR_VERSION = 8;

export interface Attr {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  ints?: number[];
}
export interface OnnxNode {
  op_type: string;
  name: string;
  input: string[];
  output: string[];
  attribute?: Attr[];
}
export interface OnnxTensor {
  name: string;
  dims: number[];
  data_type: number;
  raw_data: Uint8Array;
}

export const ints = (name: string, v: number[]): Attr => ({ name, type: ATTR_INTS, ints: v });
export const int = (name: string, v: number): Attr => ({ name, type: ATTR_INT, i: v });
export const float = (name: string, v: number): Attr => ({ name, type: ATTR_FLOAT, f: v });
export const str = (name: string, v: string): Attr => ({
  name,
  type: ATTR_STRING,
  s: new TextEncoder().encode(v),
});

export function floatTensor(name: string, dims: number[], data: Float32Array): OnnxTensor {
  // raw_data is little-endian; copy so the bytes do not alias a tfjs buffer.
  const bytes = new Uint8Array(new Float32Array(data).buffer);
  return { name, dims, data_type: FLOAT, raw_data: bytes };
}

export function int64Tensor(name: string, values: number[]): OnnxTensor {
  const bytes = new Uint8Array(BigInt64Array.from(values.map((v) => BigInt(v))).buffer);
  return { name, dims: [values.length], data_type: INT64, raw_data: bytes };
}

/** A float32 graph input/output; string dims are symbolic (e.g. 'N' for the batch). */
export function valueInfo(name: string, dims: (number | string)[]) {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dim_param: d } : { dim_value: d })) },
      },
    },
  };
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: ReturnType<typeof valueInfo>[];
  outputs: ReturnType<typeof valueInfo>[];
}

/** Serialises a graph as an ONNX model (default opset only). */
export function encodeModel(g: OnnxGraph): Uint8Array {
  const message = ModelProto.fromObject({
    ir_version: IR_VERSION,
    opset_import: [{ domain: '', version: ONNX_OPSET }],
    producer_name: 'anomaly-spotter',
    producer_version: '1',
    graph: { name: g.name, node: g.nodes, initializer: g.initializers, input: g.inputs, output: g.outputs },
  });
  return ModelProto.encode(message).finish();
}

/** The graph of a model written by encodeModel (or any model using only this schema subset). */
export function decodeModel(bytes: Uint8Array): OnnxGraph {
  const m = ModelProto.toObject(ModelProto.decode(bytes), {
    longs: Number,
    defaults: false,
    arrays: true,
  }) as {
    graph: {
      name?: string;
      node: (OnnxNode & { attribute: Attr[] })[];
      initializer: OnnxTensor[];
      input: ReturnType<typeof valueInfo>[];
      output: ReturnType<typeof valueInfo>[];
    };
  };
  const g = m.graph;
  return {
    name: g.name ?? '',
    nodes: g.node.map((n) => ({
      op_type: n.op_type,
      name: n.name ?? '',
      input: n.input ?? [],
      output: n.output ?? [],
      attribute: n.attribute ?? [],
    })),
    initializers: (g.initializer ?? []).map((t) => ({
      name: t.name,
      dims: (t.dims ?? []).map(Number),
      data_type: t.data_type,
      raw_data: t.raw_data ?? new Uint8Array(0),
    })),
    inputs: g.input ?? [],
    outputs: g.output ?? [],
  };
}
