/**
 * What the machine offers the scheduler: CPU slots from the core count and GPU indices from
 * nvidia-smi. Both can be overridden (DISTILL_CPUS, DISTILL_FAKE_GPUS or the options) so tests can
 * fake 0, 1 or 4 GPUs on a machine without any.
 */
import { availableParallelism, totalmem } from 'node:os';

export interface MachineResources {
  cpus: number;
  /** Physical GPU indices. */
  gpus: number[];
  memoryMiB: number;
}

export type GpuDetector = () => Promise<number[]>;

/** GPU indices reported by `nvidia-smi`; none when it is missing or fails. */
export const nvidiaSmiGpus: GpuDetector = async () => {
  try {
    const { execa } = await import('execa');
    const { stdout } = await execa('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], { timeout: 10_000 });
    return stdout
      .split('\n')
      .map((line) => Number.parseInt(line.trim(), 10))
      .filter((n) => Number.isInteger(n));
  } catch {
    return [];
  }
};

export async function detectResources(
  options: { cpus?: number; gpus?: number; detectGpus?: GpuDetector } = {},
): Promise<MachineResources> {
  const envCpus = process.env.DISTILL_CPUS ? Number(process.env.DISTILL_CPUS) : undefined;
  const envGpus = process.env.DISTILL_FAKE_GPUS ? Number(process.env.DISTILL_FAKE_GPUS) : undefined;
  const fakeGpus = options.gpus ?? envGpus;
  const gpus =
    fakeGpus !== undefined
      ? Array.from({ length: fakeGpus }, (_, i) => i)
      : await (options.detectGpus ?? nvidiaSmiGpus)();
  return {
    cpus: Math.max(1, options.cpus ?? envCpus ?? availableParallelism()),
    gpus,
    memoryMiB: totalmem() / 1024 ** 2,
  };
}
