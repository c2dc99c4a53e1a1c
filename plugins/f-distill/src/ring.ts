/** The 2-D toy: a mixture of Gaussians on a ring, class = mode, written as dataset shards (features [2]). */
import { Rng } from '@distillery/runtime/rng';
import { datasetSchema, ShardWriter } from '@distillery/runtime/shards';

export interface RingConfig {
  modes: number;
  radius: number;
  std: number;
  splits: { split: string; samples: number }[];
  seed: number;
}

/** Mode centres: angle 2 pi m / modes. */
export function ringCentres(modes: number, radius: number): Float64Array {
  const c = new Float64Array(modes * 2);
  for (let m = 0; m < modes; m++) {
    c[2 * m] = radius * Math.cos((2 * Math.PI * m) / modes);
    c[2 * m + 1] = radius * Math.sin((2 * Math.PI * m) / modes);
  }
  return c;
}

export async function writeRing(outDir: string, cfg: RingConfig): Promise<number> {
  const schema = datasetSchema({
    shape: [2],
    layout: 'flat',
    input: 'features',
    labels: 'single',
    numClasses: cfg.modes,
    source: `ring of ${cfg.modes} Gaussians, radius ${cfg.radius}, std ${cfg.std}`,
  });
  schema.metadata['distillery.ring'] = JSON.stringify({ modes: cfg.modes, radius: cfg.radius, std: cfg.std });
  const centres = ringCentres(cfg.modes, cfg.radius);
  const rng = new Rng(cfg.seed);
  const writer = await ShardWriter.create({ dir: outDir, schema, rowsPerShard: 65536 });
  let total = 0;
  try {
    for (const { split, samples } of cfg.splits) {
      const features = new Float32Array(samples * 2);
      const label = new Int32Array(samples);
      for (let i = 0; i < samples; i++) {
        const m = rng.int(cfg.modes);
        label[i] = m;
        features[2 * i] = centres[2 * m]! + cfg.std * rng.normal();
        features[2 * i + 1] = centres[2 * m + 1]! + cfg.std * rng.normal();
      }
      const id = Array.from({ length: samples }, (_, i) => `${split}/${String(i).padStart(6, '0')}`);
      writer.append({ id, split: new Array<string>(samples).fill(split), label, features }, samples);
      total += samples;
    }
  } catch (error) {
    await writer.abort();
    throw error;
  }
  await writer.close();
  return total;
}
