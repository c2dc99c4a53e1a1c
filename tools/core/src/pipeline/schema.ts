/**
 * The pipeline file format, as a typebox schema (so the same definition types the loader, validates
 * files with ajv, and is published as JSON Schema for editors).
 *
 *   name: tiny                      # optional; defaults to the file name
 *   params: params.yaml             # optional params file, referenced as ${{ params.a.b }}
 *   settings: { argo: {...} }       # optional settings for exporters
 *   stages:
 *     <stage>:
 *       plugin: <plugin name or ./path/to/plugin.js>
 *       foreach: [a, b]             # fan-out over a list ...
 *       matrix: { k: [1, 2], t: [x, y] }   # ... or over the product of lists
 *       inputs: { <name>: <stage or stage@instance> | [<stage>, ...] }
 *       needs: [<stage>, ...]       # ordering plus the upstream content in the cache key
 *       resources: { cpus: 1, gpus: 0, memory: 2GiB }   # minCpus: a hard minimum (else cpus is clamped to the machine)
 *       timeout: 30m                # kill the attempt after this long (number = seconds)
 *       retries: 2                  # run a failed attempt again, up to this many times
 *       with: { ...plugin params... }
 *
 * Strings may hold ${{ item }}, ${{ item.<key> }} (fan-out value) and ${{ params.<path> }}. A scalar
 * that is exactly one expression keeps the value's type.
 */
import { Type, type Static } from '@sinclair/typebox';

export const STAGE_NAME_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.-]*$';

const Scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean()]);

/** A duration: seconds as a number, or a string such as 90s, 10m, 1h30m, 500ms. */
export const DURATION_PATTERN = '^\\s*([0-9]+(\\.[0-9]+)?\\s*(ms|s|m|h)\\s*)+$';
function DurationSchema(description: string) {
  return Type.Union([Type.Number({ exclusiveMinimum: 0 }), Type.String({ pattern: DURATION_PATTERN })], {
    description: `${description} (seconds, or e.g. 90s, 10m, 1h30m)`,
  });
}

export const ResourcesSchema = Type.Object(
  {
    cpus: Type.Optional(
      Type.Integer({
        minimum: 0,
        description:
          'CPU slots the stage holds while it runs; on a machine with fewer CPUs it runs with what there is (a warning says so)',
      }),
    ),
    minCpus: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'Hard minimum: the plan fails on a machine with fewer CPUs (for stages that truly need them)',
      }),
    ),
    gpus: Type.Optional(
      Type.Integer({ minimum: 0, description: 'GPUs the stage holds (CUDA_VISIBLE_DEVICES is set)' }),
    ),
    memory: Type.Optional(
      Type.Union(
        [Type.Integer({ minimum: 0 }), Type.String({ pattern: '^[0-9.]+\\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$' })],
        {
          description: 'Memory the stage needs: bytes, or a string such as 512MiB or 4GiB',
        },
      ),
    ),
  },
  { additionalProperties: false },
);

export const StageSchema = Type.Object(
  {
    plugin: Type.String({ minLength: 1, description: 'Plugin name (e.g. teacher-infer) or a path to a plugin module' }),
    description: Type.Optional(Type.String()),
    foreach: Type.Optional(Type.Array(Scalar, { minItems: 1, description: 'Fan-out: one stage instance per item' })),
    matrix: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.Array(Scalar, { minItems: 1 }), {
        description: 'Fan-out over the product of these lists: one stage instance per combination',
      }),
    ),
    inputs: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_-]*$' }),
        Type.Union([Type.String(), Type.Array(Type.String())]),
        {
          description: 'Upstream artifacts by name: a stage, a fan-out instance (stage@item), or a list',
        },
      ),
    ),
    needs: Type.Optional(Type.Array(Type.String(), { description: 'Stages that must finish first' })),
    resources: Type.Optional(ResourcesSchema),
    timeout: Type.Optional(
      DurationSchema(
        'Time limit of one attempt; the stage is stopped (SIGTERM, then SIGKILL) and fails when it runs longer. Exported to Argo as activeDeadlineSeconds',
      ),
    ),
    retries: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 100,
        description:
          'Run a failed or timed-out attempt again, up to this many times (not after Ctrl-C). Exported to Argo as retryStrategy.limit',
      }),
    ),
    with: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Plugin parameters' })),
  },
  { additionalProperties: false },
);

export const PipelineSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: STAGE_NAME_PATTERN })),
    description: Type.Optional(Type.String()),
    params: Type.Optional(Type.String({ description: 'Params file (YAML or JSON), relative to this file' })),
    settings: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), { description: 'Settings for exporters (argo)' }),
    ),
    stages: Type.Record(Type.String({ pattern: STAGE_NAME_PATTERN }), StageSchema, { minProperties: 1 }),
  },
  { additionalProperties: false },
);

/** The top level alone: each stage is validated separately against StageSchema. */
export const PipelineTopSchema = Type.Object(
  {
    ...PipelineSchema.properties,
    stages: Type.Record(Type.String({ pattern: STAGE_NAME_PATTERN }), Type.Unknown(), { minProperties: 1 }),
  },
  { additionalProperties: false },
);

export type PipelineFile = Static<typeof PipelineSchema>;
export type StageFile = Static<typeof StageSchema>;
export type ResourcesFile = Static<typeof ResourcesSchema>;
