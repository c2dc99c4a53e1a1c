/**
 * Reading and validating COCO-format ground truth and bbox detection results.
 *
 * Follows what pycocotools' COCO() and COCO.loadRes() accept, but fails loudly where pycocotools
 * would crash or silently drop data: every error names the file and the record.
 */
import { readFile } from 'node:fs/promises';
import { EvalInputError, parseJsonText, type JsonValue } from '../errors.js';

/** Image and category ids: COCO uses integers; strings are accepted too (not mixed). */
export type CocoId = number | string;

/** A box as COCO stores it: [x, y, width, height]. */
export type CocoBox = readonly [number, number, number, number];

/** One ground-truth annotation (an entry of `annotations`). */
export interface CocoGtAnnotation {
  /** Annotation id. pycocotools marks matches with this id, so id 0 behaves as "never matched". */
  id: number;
  imageId: CocoId;
  categoryId: CocoId;
  bbox: CocoBox;
  /** The `area` field (not w*h): it decides the small/medium/large range. */
  area: number;
  /** Crowd regions are matched but ignored; IoU against them divides by the detection's area. */
  iscrowd: boolean;
}

/** Validated COCO ground truth: the evaluated image and category sets plus the boxes. */
export interface CocoGroundTruth {
  /** Every image in `images` (images without annotations count: detections there are false positives). */
  imageIds: CocoId[];
  /** Every category in `categories`; one without GT gets -1 and is left out of the means. */
  categoryIds: CocoId[];
  annotations: CocoGtAnnotation[];
}

/** One detection result (an entry of the results array). */
export interface CocoDetection {
  imageId: CocoId;
  categoryId: CocoId;
  bbox: CocoBox;
  score: number;
}

function isRecord(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readId(value: JsonValue | undefined, where: string, field: string): CocoId {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string') return value;
  throw new EvalInputError(
    `${where}: "${field}" must be a number or string, got ${JSON.stringify(value) ?? 'nothing'}`,
  );
}

function readNumber(value: JsonValue | undefined, where: string, field: string): number {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  throw new EvalInputError(`${where}: "${field}" must be a finite number, got ${JSON.stringify(value) ?? 'nothing'}`);
}

function readBox(value: JsonValue | undefined, where: string): CocoBox {
  if (!Array.isArray(value) || value.length !== 4) {
    throw new EvalInputError(
      `${where}: "bbox" must be [x, y, width, height], got ${JSON.stringify(value) ?? 'nothing'}`,
    );
  }
  const box = value.map((v, i) => readNumber(v, where, `bbox[${i}]`)) as unknown as CocoBox;
  if (box[2] < 0 || box[3] < 0) {
    throw new EvalInputError(`${where}: bbox has negative size (width ${box[2]}, height ${box[3]})`);
  }
  return box;
}

/** Checks that ids are all numbers or all strings and returns them sorted as np.unique would. */
function sortedUniqueIds(ids: CocoId[], file: string, what: string): CocoId[] {
  const kinds = new Set(ids.map((id) => typeof id));
  if (kinds.size > 1) throw new EvalInputError(`${file}: ${what} ids mix numbers and strings`);
  const unique = [...new Set(ids)];
  if (kinds.has('number')) (unique as number[]).sort((a, b) => a - b);
  else (unique as string[]).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return unique;
}

/** Validates parsed COCO ground truth JSON. `file` is used in error messages only. */
export function parseCocoGroundTruth(json: JsonValue, file: string): CocoGroundTruth {
  if (!isRecord(json)) throw new EvalInputError(`${file}: COCO ground truth must be a JSON object`);
  const { images, categories, annotations } = json;
  if (!Array.isArray(images)) throw new EvalInputError(`${file}: "images" must be an array`);
  if (!Array.isArray(categories)) throw new EvalInputError(`${file}: "categories" must be an array`);
  if (!Array.isArray(annotations)) throw new EvalInputError(`${file}: "annotations" must be an array`);

  const imageIdList = images.map((img, i) => {
    const where = `${file}: images[${i}]`;
    if (!isRecord(img)) throw new EvalInputError(`${where}: must be an object`);
    return readId(img.id, where, 'id');
  });
  const categoryIdList = categories.map((cat, i) => {
    const where = `${file}: categories[${i}]`;
    if (!isRecord(cat)) throw new EvalInputError(`${where}: must be an object`);
    return readId(cat.id, where, 'id');
  });
  const imageIds = sortedUniqueIds(imageIdList, file, 'image');
  const categoryIds = sortedUniqueIds(categoryIdList, file, 'category');
  if (imageIds.length !== imageIdList.length) throw new EvalInputError(`${file}: duplicate image ids in "images"`);
  if (categoryIds.length !== categoryIdList.length) {
    throw new EvalInputError(`${file}: duplicate category ids in "categories"`);
  }
  const imageSet = new Set<CocoId>(imageIds);
  const categorySet = new Set<CocoId>(categoryIds);

  const parsed = annotations.map((ann, i): CocoGtAnnotation => {
    let where = `${file}: annotations[${i}]`;
    if (!isRecord(ann)) throw new EvalInputError(`${where}: must be an object`);
    const id = readNumber(ann.id, where, 'id');
    where += ` (id ${id})`;
    const imageId = readId(ann.image_id, where, 'image_id');
    const categoryId = readId(ann.category_id, where, 'category_id');
    if (!imageSet.has(imageId)) throw new EvalInputError(`${where}: unknown image_id ${JSON.stringify(imageId)}`);
    if (!categorySet.has(categoryId)) {
      throw new EvalInputError(`${where}: unknown category_id ${JSON.stringify(categoryId)}`);
    }
    const bbox = readBox(ann.bbox, where);
    const area = readNumber(ann.area, where, 'area');
    const crowd = ann.iscrowd ?? 0;
    if (crowd !== 0 && crowd !== 1 && crowd !== true && crowd !== false) {
      throw new EvalInputError(`${where}: "iscrowd" must be 0 or 1, got ${JSON.stringify(crowd)}`);
    }
    return { id, imageId, categoryId, bbox, area, iscrowd: crowd === 1 || crowd === true };
  });
  return { imageIds, categoryIds, annotations: parsed };
}

/**
 * Validates a parsed detections array against the ground truth (as loadRes does, plus category
 * checks that pycocotools skips silently).
 */
export function parseCocoDetections(json: JsonValue, file: string, gt: CocoGroundTruth): CocoDetection[] {
  if (!Array.isArray(json)) throw new EvalInputError(`${file}: detections must be a JSON array`);
  const imageSet = new Set<CocoId>(gt.imageIds);
  const categorySet = new Set<CocoId>(gt.categoryIds);
  return json.map((det, i): CocoDetection => {
    const where = `${file}: detection [${i}]`;
    if (!isRecord(det)) throw new EvalInputError(`${where}: must be an object`);
    const imageId = readId(det.image_id, where, 'image_id');
    const categoryId = readId(det.category_id, where, 'category_id');
    if (!imageSet.has(imageId)) {
      throw new EvalInputError(`${where}: image_id ${JSON.stringify(imageId)} is not in the ground truth`);
    }
    if (!categorySet.has(categoryId)) {
      throw new EvalInputError(`${where}: category_id ${JSON.stringify(categoryId)} is not in the ground truth`);
    }
    const bbox = readBox(det.bbox, where);
    const score = readNumber(det.score, where, 'score');
    return { imageId, categoryId, bbox, score };
  });
}

/** Reads and validates a COCO ground-truth file and a detections file. */
export async function loadCocoFiles(
  gtPath: string,
  detsPath: string,
): Promise<{ gt: CocoGroundTruth; detections: CocoDetection[] }> {
  const gt = parseCocoGroundTruth(parseJsonText(await readFile(gtPath, 'utf8'), gtPath), gtPath);
  const detections = parseCocoDetections(parseJsonText(await readFile(detsPath, 'utf8'), detsPath), detsPath, gt);
  return { gt, detections };
}
