/**
 * A small builder for ONNX graphs written by hand (training graphs, loss and anomaly-map graphs):
 * nodes get generated output names, constants are created once and shared.
 */
import { floatTensor, int64Tensor, ints, type OnnxNode, type OnnxTensor } from './proto';

/** Nodes with generated output names, plus the constants they use. */
export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private count = 0;
  private readonly constants = new Map<string, string>();

  op(opType: string, inputs: string[], attribute: OnnxNode['attribute'] = [], output?: string): string {
    const name = `${opType}_${this.count++}`;
    const out = output ?? `${name}:0`;
    this.nodes.push({ op_type: opType, name, input: inputs, output: [out], attribute });
    return out;
  }

  /** A shared constant initializer, created on first use. */
  private constant(key: string, make: (name: string) => OnnxTensor): string {
    let name = this.constants.get(key);
    if (!name) {
      name = `const/${key}`;
      this.initializers.push(make(name));
      this.constants.set(key, name);
    }
    return name;
  }

  ints64(values: number[]): string {
    return this.constant(`i64:${values.join(',')}`, (name) => int64Tensor(name, values));
  }

  floats(values: number[]): string {
    return this.constant(`f32:${values.join(',')}`, (name) =>
      floatTensor(name, [values.length], Float32Array.from(values)),
    );
  }

  transpose(x: string, perm: number[], output?: string): string {
    return this.op('Transpose', [x], [ints('perm', perm)], output);
  }
}
