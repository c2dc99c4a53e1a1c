/** @distillery/plugin-detect: detection building blocks (no stage yet): boxes, CenterNet targets and decoding, NMS. */
export { iou, type Box, type Detection, type LabelledBox } from './boxes.js';
export {
  decodeCenterNet,
  drawGaussian,
  encodeCenterNet,
  gaussianRadius,
  outputSize,
  type CenterNetGeometry,
  type CenterNetHeads,
  type CenterNetTargets,
  type DecodeOptions,
  type EncodeOptions,
} from './centernet.js';
export { nmsByClass } from './nms.js';
export {
  DETECTOR_INPUT,
  DETECTOR_METADATA_KEY,
  DETECTOR_OUTPUTS,
  parseDetectorGeometry,
  type DetectorGeometry,
} from './model-contract.js';
