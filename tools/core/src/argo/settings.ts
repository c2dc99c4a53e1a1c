/**
 * The keys `distill export argo` reads from a pipeline's `settings.argo` (the pipeline schema leaves
 * `settings` free-form; this schema checks the argo part when exporting). Command-line options
 * override image, store, namespace and pipelinePath.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Ajv } from 'ajv';

const StringMap = Type.Record(Type.String(), Type.String());
const Objects = Type.Array(Type.Record(Type.String(), Type.Unknown()));

/** Scheduling keys that can be set for the whole workflow, for GPU stages, or per stage. */
const Placement = {
  nodeSelector: Type.Optional(StringMap),
  tolerations: Type.Optional(Objects),
  affinity: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
};

export const ArgoSettingsSchema = Type.Object(
  {
    image: Type.Optional(
      Type.String({ minLength: 1, description: 'Container image holding this repository, node and distill' }),
    ),
    imagePullPolicy: Type.Optional(
      Type.Union([Type.Literal('Always'), Type.Literal('IfNotPresent'), Type.Literal('Never')]),
    ),
    command: Type.Optional(
      Type.Array(Type.String(), { minItems: 1, description: 'How the image runs distill (default: [distill])' }),
    ),
    pipelinePath: Type.Optional(
      Type.String({
        description: 'The pipeline file inside the image (default: its path relative to the project root)',
      }),
    ),
    workingDir: Type.Optional(
      Type.String({ description: "Working directory in the container (default: the image's)" }),
    ),
    namespace: Type.Optional(Type.String()),
    serviceAccountName: Type.Optional(Type.String()),
    generateName: Type.Optional(Type.String({ description: 'Workflow name prefix (default: <pipeline>-)' })),
    store: Type.Optional(Type.String({ description: 'Artifact store URL every task uses (--store overrides)' })),
    credentialsSecret: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description: 'Secret whose keys become env vars (AWS_ACCESS_KEY_ID, ...) in every task; null for none',
      }),
    ),
    env: Type.Optional(StringMap),
    parallelism: Type.Optional(Type.Integer({ minimum: 1, description: 'At most this many tasks at once' })),
    retryStrategy: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        description: 'Argo retryStrategy of every task (default: 3 retries on errors such as preemption)',
      }),
    ),
    activeDeadlineSeconds: Type.Optional(Type.Integer({ minimum: 1, description: 'Per-task time limit' })),
    volumes: Type.Optional(Objects),
    volumeMounts: Type.Optional(Objects),
    ...Placement,
    gpu: Type.Optional(
      Type.Object(Placement, { additionalProperties: false, description: 'Added to tasks that request GPUs' }),
    ),
    stages: Type.Optional(
      Type.Record(
        Type.String(),
        Type.Object(
          {
            ...Placement,
            retryStrategy: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
            image: Type.Optional(Type.String()),
          },
          { additionalProperties: false },
        ),
        { description: 'Per stage name: overrides of the keys above' },
      ),
    ),
  },
  { additionalProperties: false },
);

export type ArgoSettings = Static<typeof ArgoSettingsSchema>;

/** Retries for tasks whose pod was lost (spot/preemptible node reclaimed, node failure). */
export const DEFAULT_RETRY = {
  limit: '3',
  retryPolicy: 'OnError',
  backoff: { duration: '30s', factor: '2', maxDuration: '30m' },
};

let validator: ReturnType<Ajv['compile']> | undefined;

/** `settings.argo` of a pipeline, checked; errors name the offending key. */
export function readArgoSettings(settings: Record<string, unknown>, file: string): ArgoSettings {
  const value = settings.argo ?? {};
  validator ??= new Ajv({ allErrors: true, strict: false }).compile(ArgoSettingsSchema);
  if (!validator(value)) {
    const problems = (validator.errors ?? []).map((e) => {
      const where = `settings.argo${e.instancePath.replace(/\//g, '.')}`;
      const extra =
        e.keyword === 'additionalProperties'
          ? ` "${(e.params as { additionalProperty: string }).additionalProperty}"`
          : '';
      return `${where}: ${e.message ?? 'invalid'}${extra}`;
    });
    throw new Error(`${file}: invalid settings.argo:\n  ${problems.join('\n  ')}`);
  }
  return value as ArgoSettings;
}
