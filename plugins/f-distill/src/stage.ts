/** Glue between the plugin contract and the work modules (light: no heavy imports at top level). */
import type { StageContext } from '@distillery/core/plugin';
import { Type } from '@sinclair/typebox';

/** Progress / metric / log callbacks the work modules take. */
export function stageHooks(ctx: StageContext<unknown>, unit: string) {
  return {
    log: (m: string) => ctx.log.info(m),
    progress: (done: number, total: number) => ctx.progress(done, total, unit),
    metric: (name: string, value: number, step?: number) => ctx.metric(name, value, step),
    signal: ctx.signal,
  };
}

/** Selects the tfjs backend for the stage's CPUs (wasm here), logging the choice. */
export async function selectStageBackend(
  ctx: StageContext<unknown>,
  prefer: 'auto' | 'wasm' | 'cpu' = 'auto',
): Promise<void> {
  const { selectBackend } = await import('@distillery/runtime/tfjs');
  await selectBackend({ cpus: ctx.devices.cpus, gpus: ctx.devices.gpus, prefer, log: (m) => ctx.log.info(m) });
}

export const BackendParam = Type.Union([Type.Literal('auto'), Type.Literal('wasm'), Type.Literal('cpu')], {
  default: 'auto',
  description: 'tfjs backend (auto: tfjs-node if its binding loads, else wasm, else cpu)',
});

/** EDM schedule parameters (see edm.ts). */
export const EdmParams = {
  sigmaData: Type.Number({
    default: 0.5,
    exclusiveMinimum: 0,
    description: 'EDM sigma_data: standard deviation of the data',
  }),
  sigmaMin: Type.Number({ default: 0.002, exclusiveMinimum: 0 }),
  sigmaMax: Type.Number({ default: 80, exclusiveMinimum: 0 }),
  rho: Type.Number({ default: 7, exclusiveMinimum: 0 }),
};
