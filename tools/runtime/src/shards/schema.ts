/**
 * The shard schemas of the project: the one place they are defined (SCHEMA.md in this folder is
 * the same description for pyarrow / polars users).
 *
 * A shard set is a directory holding `manifest.json` and `<prefix>-00000.arrow`, ... files in the
 * Arrow IPC *file* format (readable by `pyarrow.ipc.open_file`, `polars.read_ipc`). Every shard of
 * a set has the same schema and the same file metadata (Arrow schema custom metadata); the manifest
 * (see ShardManifest) lists shards in order with row counts, byte sizes and sha256.
 *
 * This module is light on purpose (no apache-arrow import): schemas are described by ShardSchema
 * and turned into Arrow schemas by the writer, which loads apache-arrow lazily.
 *
 * Dataset shards (`distillery.schema` = "dataset/1"):
 *   id       utf8, not null       unique sample id (e.g. "train/00042" or a file's relative path)
 *   split    utf8, not null       "train", "test", "val", ...
 *   label    int32                single-label datasets: class id, -1 when unlabelled
 *   labels   list<int32>          multi-label datasets instead of `label`: the true class ids
 *   pixels   fixed_size_list<uint8>[D]     images, D = prod(shape), layout in `distillery.layout`
 *   features fixed_size_list<float32>[D]   instead of `pixels` for real-valued inputs
 *   metadata: distillery.shape (JSON int array, e.g. [28,28,1]), distillery.layout ("HWC" | "CHW"
 *   | "flat"), distillery.num_classes, optional distillery.class_names (JSON string array),
 *   distillery.source (free text: where the data came from).
 *
 * Teacher-output shards (`distillery.schema` = "teacher-outputs/1"); columns by storage mode:
 *   id                 utf8                        sample id, same as the dataset's
 *   logits             fixed_size_list<float32>[C] dense mode: raw logits z (before temperature),
 *                                                  in the teacher's LOCAL class order
 *   topk_ids           fixed_size_list<int32>[k]   top-k mode: GLOBAL class ids, most probable first
 *   topk_logprobs      fixed_size_list<float32>[k] log p of those ids at the capture temperature T:
 *                                                  softmax teachers log_softmax(z/T) over the teacher's
 *                                                  classes; sigmoid teachers log sigmoid(z/T)
 *   topk_missing_mass  float32                     softmax: 1 - sum of kept p (tail mass, >= 0);
 *                                                  sigmoid: sum of sigmoid p of the classes not kept
 *   sample_ids         list<int32>                 sampled mode: distinct GLOBAL ids drawn, ascending
 *   sample_counts      list<uint16>                how often each id was drawn; sums to N (draws)
 *   sample_weights     list<float32>               only when tau != 1: t_i / q_i, so that the
 *                                                  unbiased target is count_i / N * weight_i
 *   features           fixed_size_list<float32>[F] optional penultimate features
 *   metadata: distillery.teacher_id, distillery.model_sha256, distillery.temperature,
 *   distillery.activation ("softmax" | "sigmoid"), distillery.num_classes (size of the GLOBAL label
 *   space), distillery.class_map (JSON int array: global id of each local class; absent = identity),
 *   distillery.storage (JSON StorageSpec), distillery.feature_dim (when features are stored).
 */

/** Element types a shard column may hold. */
export type ElementType = 'utf8' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'float64';

/**
 * One column: a scalar of `type`, or a fixed-size list of `width` elements, or a variable-length
 * list (`list: true`). Utf8 columns are scalars only. Columns are never null.
 */
export interface ColumnSpec {
  name: string;
  type: ElementType;
  width?: number;
  list?: boolean;
}

/** Columns plus the file metadata every shard of a set carries (string to string). */
export interface ShardSchema {
  columns: ColumnSpec[];
  metadata: Record<string, string>;
}

/** Typed arrays a numeric column's values come in, by ElementType. */
export type NumericArray =
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array;

/** Values of a variable-length list column for n rows: row r is values[offsets[r]..offsets[r+1]). */
export interface ListValues {
  offsets: Int32Array;
  values: NumericArray;
}

/**
 * Values of one column for n rows: string[] for utf8; a typed array of n (scalar) or n*width
 * (fixed-size list, row-major) elements; ListValues for list columns.
 */
export type ColumnValues = string[] | NumericArray | ListValues;

export const SCHEMA_KEY = 'distillery.schema';
export const DATASET_SCHEMA = 'dataset/1';
export const TEACHER_SCHEMA = 'teacher-outputs/1';

/** Options of a dataset shard set (see the module comment for the columns they select). */
export interface DatasetSchemaOptions {
  /** Shape of one sample's input, e.g. [28, 28, 1]; D = product. */
  shape: number[];
  layout?: 'HWC' | 'CHW' | 'flat';
  /** `pixels` (uint8) or `features` (float32). */
  input: 'pixels' | 'features';
  /** `single` gives a `label` column, `multi` a `labels` list column. */
  labels: 'single' | 'multi';
  numClasses: number;
  classNames?: string[];
  source?: string;
}

export function datasetSchema(options: DatasetSchemaOptions): ShardSchema {
  const width = options.shape.reduce((a, b) => a * b, 1);
  if (!Number.isInteger(width) || width <= 0)
    throw new Error(`dataset schema: bad shape ${JSON.stringify(options.shape)}`);
  const columns: ColumnSpec[] = [
    { name: 'id', type: 'utf8' },
    { name: 'split', type: 'utf8' },
    options.labels === 'single' ? { name: 'label', type: 'int32' } : { name: 'labels', type: 'int32', list: true },
    options.input === 'pixels'
      ? { name: 'pixels', type: 'uint8', width }
      : { name: 'features', type: 'float32', width },
  ];
  const metadata: Record<string, string> = {
    [SCHEMA_KEY]: DATASET_SCHEMA,
    'distillery.shape': JSON.stringify(options.shape),
    'distillery.layout': options.layout ?? (options.shape.length === 1 ? 'flat' : 'HWC'),
    'distillery.num_classes': String(options.numClasses),
  };
  if (options.classNames) metadata['distillery.class_names'] = JSON.stringify(options.classNames);
  if (options.source) metadata['distillery.source'] = options.source;
  return { columns, metadata };
}

/** Parsed metadata of a dataset shard set. */
export interface DatasetInfo {
  shape: number[];
  layout: string;
  numClasses: number;
  classNames?: string[];
  input: 'pixels' | 'features';
  labels: 'single' | 'multi';
  /** Elements per sample (product of shape). */
  width: number;
}

export function parseDatasetSchema(schema: ShardSchema, where = 'dataset'): DatasetInfo {
  const m = schema.metadata;
  if (m[SCHEMA_KEY] !== DATASET_SCHEMA) {
    throw new Error(
      `${where}: not a dataset shard set (${SCHEMA_KEY} = ${JSON.stringify(m[SCHEMA_KEY])}, expected "${DATASET_SCHEMA}")`,
    );
  }
  const shape = JSON.parse(m['distillery.shape'] ?? 'null') as unknown;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new Error(`${where}: bad distillery.shape metadata ${JSON.stringify(m['distillery.shape'])}`);
  }
  const names = new Set(schema.columns.map((c) => c.name));
  const input = names.has('pixels') ? 'pixels' : names.has('features') ? 'features' : undefined;
  const labels = names.has('label') ? 'single' : names.has('labels') ? 'multi' : undefined;
  if (!input || !labels || !names.has('id'))
    throw new Error(`${where}: dataset columns missing (have ${[...names].join(', ')})`);
  const info: DatasetInfo = {
    shape: shape as number[],
    layout: m['distillery.layout'] ?? 'flat',
    numClasses: Number(m['distillery.num_classes'] ?? 0),
    input,
    labels,
    width: (shape as number[]).reduce((a, b) => a * b, 1),
  };
  if (m['distillery.class_names']) info.classNames = JSON.parse(m['distillery.class_names']) as string[];
  return info;
}

/** Which outputs a teacher stage stores; several modes may be combined in one shard set. */
export interface StorageSpec {
  dense: boolean;
  /** Top-k: k kept classes; omitted when top-k is not stored. */
  topk?: { k: number };
  /** Sampled soft labels: N draws from q proportional to t^tau, seeded. */
  sampled?: { draws: number; tau: number; seed: number };
  /**
   * Features of this width (values per sample). `output`: the model output they were read from;
   * `shape`: that output's dims after the batch dim, in the model's layout (NCHW for an ONNX conv
   * map), so a reader can restore the map from the flat row. Both absent in older shard sets.
   */
  features?: { dim: number; output?: string; shape?: number[] };
}

/** Everything about a teacher that goes into the file metadata. */
export interface TeacherOutputOptions {
  teacherId: string;
  modelSha256: string;
  temperature: number;
  activation: 'softmax' | 'sigmoid';
  /** Size of the global label space. */
  numClasses: number;
  /** Global id of each of the teacher's local classes; omitted = identity over numClasses. */
  classMap?: number[];
  storage: StorageSpec;
}

export function teacherOutputSchema(options: TeacherOutputOptions): ShardSchema {
  const localClasses = options.classMap ? options.classMap.length : options.numClasses;
  const s = options.storage;
  const columns: ColumnSpec[] = [{ name: 'id', type: 'utf8' }];
  if (s.dense) columns.push({ name: 'logits', type: 'float32', width: localClasses });
  if (s.topk) {
    columns.push({ name: 'topk_ids', type: 'int32', width: s.topk.k });
    columns.push({ name: 'topk_logprobs', type: 'float32', width: s.topk.k });
    columns.push({ name: 'topk_missing_mass', type: 'float32' });
  }
  if (s.sampled) {
    columns.push({ name: 'sample_ids', type: 'int32', list: true });
    columns.push({ name: 'sample_counts', type: 'uint16', list: true });
    if (s.sampled.tau !== 1) columns.push({ name: 'sample_weights', type: 'float32', list: true });
  }
  if (s.features) columns.push({ name: 'features', type: 'float32', width: s.features.dim });
  const metadata: Record<string, string> = {
    [SCHEMA_KEY]: TEACHER_SCHEMA,
    'distillery.teacher_id': options.teacherId,
    'distillery.model_sha256': options.modelSha256,
    'distillery.temperature': String(options.temperature),
    'distillery.activation': options.activation,
    'distillery.num_classes': String(options.numClasses),
    'distillery.storage': JSON.stringify(s),
  };
  if (options.classMap) metadata['distillery.class_map'] = JSON.stringify(options.classMap);
  if (s.features) metadata['distillery.feature_dim'] = String(s.features.dim);
  return { columns, metadata };
}

/** Parses the file metadata of a teacher-output shard set back into TeacherOutputOptions. */
export function parseTeacherSchema(schema: ShardSchema, where = 'teacher outputs'): TeacherOutputOptions {
  const m = schema.metadata;
  if (m[SCHEMA_KEY] !== TEACHER_SCHEMA) {
    throw new Error(
      `${where}: not a teacher-output shard set (${SCHEMA_KEY} = ${JSON.stringify(m[SCHEMA_KEY])}, expected "${TEACHER_SCHEMA}")`,
    );
  }
  const activation = m['distillery.activation'];
  if (activation !== 'softmax' && activation !== 'sigmoid')
    throw new Error(`${where}: bad distillery.activation ${JSON.stringify(activation)}`);
  const options: TeacherOutputOptions = {
    teacherId: m['distillery.teacher_id'] ?? '',
    modelSha256: m['distillery.model_sha256'] ?? '',
    temperature: Number(m['distillery.temperature']),
    activation,
    numClasses: Number(m['distillery.num_classes']),
    storage: JSON.parse(m['distillery.storage'] ?? '{"dense":false}') as StorageSpec,
  };
  if (m['distillery.class_map']) options.classMap = JSON.parse(m['distillery.class_map']) as number[];
  return options;
}

/** One shard file as the manifest records it. */
export interface ShardEntry {
  /** File name relative to the shard-set directory. */
  file: string;
  rows: number;
  bytes: number;
  sha256: string;
}

/** `manifest.json` of a shard set; written last, atomically: a set without one is incomplete. */
export interface ShardManifest {
  format: 'distillery-shards';
  version: 1;
  /** Rows per shard the writer used (every shard but the last has exactly this many). */
  rowsPerShard: number;
  totalRows: number;
  columns: ColumnSpec[];
  metadata: Record<string, string>;
  shards: ShardEntry[];
}

export const MANIFEST_FILE = 'manifest.json';
