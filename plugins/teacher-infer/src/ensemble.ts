/**
 * An ensemble of ONNX classifiers as one ONNX model: the member graphs side by side on one shared
 * input, and their logits averaged (optionally weighted) into the output. Averaging logits of
 * several independently trained networks is the classic strong teacher (Hinton et al. 2015, section
 * 3; docs/methods.md, "Ensemble teachers"). Because the result is an ordinary model, teacher-infer,
 * eval and exec stages use it like any single teacher.
 */
import type { OnnxGraph, OnnxModel, OnnxNode, OnnxValueInfo } from '@distillery/runtime/onnx';

export interface EnsembleMember {
  /** Where the model came from (a stage id or a file), for error messages. */
  label: string;
  model: OnnxModel;
}

export interface EnsembleOptions {
  /** Weight of each member's logits; default equal weights 1/n. Must sum to a positive number. */
  weights?: number[];
  /** Output of each member that holds the logits; default its first output. */
  output?: string;
  /**
   * Outputs of the FIRST member kept as extra outputs under their own names, after the logits
   * (e.g. its penultimate features, for a FitNets hint from one member while soft labels come
   * from the ensemble).
   */
  passThrough?: string[];
}

function sameShape(a: OnnxValueInfo, b: OnnxValueInfo): boolean {
  return a.elemType === b.elemType && JSON.stringify(a.shape ?? null) === JSON.stringify(b.shape ?? null);
}

function defaultOpset(model: OnnxModel): number {
  return model.opsetImports.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 0;
}

/** The member's graph with every value, node and initializer name prefixed, its input renamed to `inputName`. */
function prefixedGraph(graph: OnnxGraph, prefix: string, ownInput: string, inputName: string): OnnxGraph {
  const rename = (name: string): string => (name === '' ? '' : name === ownInput ? inputName : `${prefix}${name}`);
  const nodes: OnnxNode[] = graph.nodes.map((node) => {
    for (const [key, value] of Object.entries(node.attributes)) {
      // A subgraph may read outer values by name; renaming inside it is not worth the risk here.
      if ('g' in value || 'graphs' in value)
        throw new Error(
          `node ${node.name} (${node.opType}) has a subgraph attribute "${key}", which ensembles do not support`,
        );
    }
    return {
      ...node,
      name: `${prefix}${node.name}`,
      inputs: node.inputs.map(rename),
      outputs: node.outputs.map(rename),
    };
  });
  return {
    name: graph.name,
    nodes,
    inputs: [],
    outputs: graph.outputs.map((o) => ({ ...o, name: rename(o.name) })),
    initializers: graph.initializers.map((t) => ({ ...t, name: rename(t.name) })),
    valueInfo: graph.valueInfo.map((v) => ({ ...v, name: rename(v.name) })),
  };
}

/**
 * Merges the members into one model whose single output (named as the first member's logits
 * output) is sum_i w_i * logits_i with w = weights / sum(weights). Every member must have one
 * graph input of the same type and shape, a logits output of the same type and shape, and the same
 * default-domain opset (mixing opsets could change an op's semantics silently).
 */
export function ensembleModels(members: EnsembleMember[], options: EnsembleOptions = {}): OnnxModel {
  if (members.length < 2) throw new Error(`an ensemble needs at least 2 models, got ${members.length}`);
  const weights = options.weights ?? members.map(() => 1);
  if (weights.length !== members.length)
    throw new Error(`weights has ${weights.length} entries for ${members.length} models`);
  if (weights.some((w) => !Number.isFinite(w) || w < 0))
    throw new Error(`weights must be finite and non-negative, got [${weights.join(', ')}]`);
  const total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0)) throw new Error('weights sum to 0');

  const first = members[0]!;
  const inputOf = (m: EnsembleMember): OnnxValueInfo => {
    const initializers = new Set(m.model.graph.initializers.map((t) => t.name));
    const inputs = m.model.graph.inputs.filter((i) => !initializers.has(i.name));
    if (inputs.length !== 1)
      throw new Error(
        `model ${m.label}: an ensemble member needs exactly one graph input, found ${inputs.length} (${inputs.map((i) => i.name).join(', ')})`,
      );
    return inputs[0]!;
  };
  const outputOf = (m: EnsembleMember): OnnxValueInfo => {
    const outputs = m.model.graph.outputs;
    const found = options.output ? outputs.find((o) => o.name === options.output) : outputs[0];
    if (!found)
      throw new Error(
        `model ${m.label}: no output ${options.output ? `named "${options.output}" (outputs: ${outputs.map((o) => o.name).join(', ')})` : ''}`,
      );
    return found;
  };
  const input = inputOf(first);
  const logits = outputOf(first);
  const opset = defaultOpset(first.model);
  const domains = new Map<string, number>();
  const graph: OnnxGraph = {
    name: 'ensemble',
    nodes: [],
    inputs: [input],
    outputs: [],
    initializers: [],
    valueInfo: [],
  };
  const memberLogits: string[] = [];
  members.forEach((m, i) => {
    const own = inputOf(m);
    if (!sameShape(own, input))
      throw new Error(
        `model ${m.label}: input ${own.name} ${own.elemType}[${own.shape}] differs from ${first.label}'s ${input.elemType}[${input.shape}]`,
      );
    const out = outputOf(m);
    if (!sameShape(out, logits))
      throw new Error(
        `model ${m.label}: output ${out.name} ${out.elemType}[${out.shape}] differs from ${first.label}'s ${logits.elemType}[${logits.shape}]`,
      );
    if (defaultOpset(m.model) !== opset)
      throw new Error(
        `model ${m.label}: opset ${defaultOpset(m.model)} differs from ${first.label}'s ${opset}; export the members with one opset`,
      );
    for (const o of m.model.opsetImports) domains.set(o.domain, Math.max(domains.get(o.domain) ?? 0, o.version));
    const part = prefixedGraph(m.model.graph, `m${i}/`, own.name, input.name);
    graph.nodes.push(...part.nodes);
    graph.initializers.push(...part.initializers);
    graph.valueInfo.push(...part.valueInfo);
    memberLogits.push(`m${i}/${out.name}`);
  });
  // sum_i (w_i / total) * logits_i: one Mul per member by a scalar constant, then Sum.
  const scaled = memberLogits.map((name, i) => {
    const w = `ensemble/weight${i}`;
    graph.initializers.push({ name: w, dataType: 'float32', dims: [], data: Float32Array.of(weights[i]! / total) });
    graph.nodes.push({
      name: `ensemble/scale${i}`,
      opType: 'Mul',
      domain: '',
      inputs: [name, w],
      outputs: [`${name}/weighted`],
      attributes: {},
    });
    return `${name}/weighted`;
  });
  graph.nodes.push({
    name: 'ensemble/sum',
    opType: 'Sum',
    domain: '',
    inputs: scaled,
    outputs: [logits.name],
    attributes: {},
  });
  graph.outputs.push(logits);
  for (const name of options.passThrough ?? []) {
    const kept = first.model.graph.outputs.find((o) => o.name === name);
    if (!kept)
      throw new Error(
        `model ${first.label}: passThrough output "${name}" is not one of its outputs (${first.model.graph.outputs.map((o) => o.name).join(', ')})`,
      );
    if (name === logits.name) throw new Error(`passThrough output "${name}" is the logits output`);
    graph.nodes.push({
      name: `ensemble/pass/${name}`,
      opType: 'Identity',
      domain: '',
      inputs: [`m0/${name}`],
      outputs: [name],
      attributes: {},
    });
    graph.outputs.push(kept);
  }
  return {
    irVersion: Math.max(...members.map((m) => m.model.irVersion)),
    opsetImports: [...domains].map(([domain, version]) => ({ domain, version })),
    producerName: 'distillery teacher-ensemble',
    producerVersion: first.model.producerVersion,
    graph,
    metadata: {
      ...first.model.metadata,
      'distillery.arch': 'ensemble',
      'distillery.ensemble.members': JSON.stringify(members.map((m) => m.label)),
      'distillery.ensemble.weights': JSON.stringify(weights.map((w) => w / total)),
    },
  };
}
