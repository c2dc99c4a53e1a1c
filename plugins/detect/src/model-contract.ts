/**
 * The detector model contract: what a detector ONNX file written by `detect-train` holds, and what
 * `detect-infer` (teacher outputs) and `detect-eval` read. Any ONNX model following it (e.g. one
 * exported from PyTorch) can be a teacher or be evaluated.
 *
 * Input
 *   pixels          float32 [N, H, W, 1]  NHWC, pixel / 255 (the dataset's uint8 pixels scaled)
 * Outputs (NCHW maps at output resolution h = H / stride, w = W / stride)
 *   heatmap         float32 [N, C, h, w]  per-class centre probabilities (sigmoid of the logits)
 *   heatmap_logits  float32 [N, C, h, w]  the same before the sigmoid (what heatmap distillation reads)
 *   size            float32 [N, 2, h, w]  box width, height in output cells
 *   offset          float32 [N, 2, h, w]  centre minus its cell's corner, in cells
 *   feature         float32 [N, F, h, w]  the backbone's last map, the heads' input (feature imitation
 *                                         and the adversarial discriminator read it)
 * Metadata (model metadata_props)
 *   distillery.detector  JSON DetectorGeometry below
 *
 * The maps are exactly the CenterNetHeads of ./centernet.ts for one image once the batch axis is
 * dropped, so decodeCenterNet applies to them as they are.
 */
export const DETECTOR_INPUT = 'pixels';
export const DETECTOR_OUTPUTS = {
  heatmap: 'heatmap',
  heatmapLogits: 'heatmap_logits',
  size: 'size',
  offset: 'offset',
  feature: 'feature',
} as const;
export const DETECTOR_METADATA_KEY = 'distillery.detector';

/** Geometry stored in the model's metadata under DETECTOR_METADATA_KEY. */
export interface DetectorGeometry {
  inputWidth: number;
  inputHeight: number;
  /** Input pixels per output cell. */
  stride: number;
  numClasses: number;
  /** Channels of the `feature` output. */
  featureChannels: number;
}

/** Parses DETECTOR_METADATA_KEY's value; throws naming `where` (a file) when it is missing or malformed. */
export function parseDetectorGeometry(value: string | undefined, where: string): DetectorGeometry {
  if (value === undefined) throw new Error(`${where}: not a detector model (no ${DETECTOR_METADATA_KEY} metadata)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new Error(`${where}: ${DETECTOR_METADATA_KEY} is not JSON: ${value.slice(0, 80)}`);
  }
  const g = parsed as Partial<Record<keyof DetectorGeometry, unknown>>;
  for (const key of ['inputWidth', 'inputHeight', 'stride', 'numClasses', 'featureChannels'] as const)
    if (!(Number.isInteger(g[key]) && (g[key] as number) >= 1))
      throw new Error(`${where}: ${DETECTOR_METADATA_KEY}.${key} must be an integer >= 1, got ${String(g[key])}`);
  return g as DetectorGeometry;
}
