/**
 * Class embeddings for k-means partitioning: the mean input feature of each class over a dataset
 * (or the mean teacher penultimate feature, when teacher shards with features are given: rows of
 * teacher outputs are in the dataset's order). Streams the shards; sums in float64.
 */
import { openShardSet, parseDatasetSchema } from '@distillery/runtime/shards';

export async function classMeanEmbeddings(
  datasetDir: string,
  options: { split?: string; teacherDir?: string; signal?: AbortSignal } = {},
): Promise<{ embeddings: Float32Array; numClasses: number; dim: number }> {
  const dataset = await openShardSet(datasetDir);
  const info = parseDatasetSchema(dataset.schema, datasetDir);
  if (info.labels !== 'single') throw new Error(`${datasetDir}: k-means partitioning needs single-label data`);
  const teacher = options.teacherDir ? await openShardSet(options.teacherDir) : undefined;
  if (teacher && !teacher.schema.columns.some((c) => c.name === 'features')) {
    throw new Error(
      `${options.teacherDir}: teacher shards hold no penultimate features (run teacher-infer with features enabled)`,
    );
  }
  if (teacher && teacher.totalRows !== dataset.totalRows)
    throw new Error(`${options.teacherDir}: ${teacher.totalRows} rows, but the dataset has ${dataset.totalRows}`);
  const featureSpec = teacher
    ? teacher.schema.columns.find((c) => c.name === 'features')
    : dataset.schema.columns.find((c) => c.name === 'features' || c.name === 'pixels');
  const dim = featureSpec?.width ?? info.width;
  const numClasses = info.numClasses;
  const sums = new Float64Array(numClasses * dim);
  const counts = new Float64Array(numClasses);
  const teacherBatches = teacher?.batches();
  let pending: { values: ArrayLike<number>; offset: number; rows: number } | undefined;
  for await (const batch of dataset.batches()) {
    options.signal?.throwIfAborted();
    const labels = batch.numeric('label');
    const splits = options.split ? batch.strings('split') : undefined;
    const inputs = teacher ? undefined : batch.numeric(info.input);
    for (let r = 0; r < batch.numRows; r++) {
      let row: ArrayLike<number>;
      let base: number;
      if (teacherBatches) {
        while (!pending || pending.offset >= pending.rows) {
          const next = await teacherBatches.next();
          if (next.done) throw new Error('teacher shards ended before the dataset');
          pending = { values: next.value.numeric('features'), offset: 0, rows: next.value.numRows };
        }
        row = pending.values;
        base = pending.offset * dim;
        pending.offset++;
      } else {
        row = inputs as ArrayLike<number>;
        base = r * dim;
      }
      if (splits && splits[r] !== options.split) continue;
      const label = labels[r] as number;
      if (label < 0) continue;
      if (label >= numClasses)
        throw new Error(
          `${batch.file}: row ${batch.startRow + r} has label ${label}, but the dataset has ${numClasses} classes`,
        );
      counts[label] = (counts[label] as number) + 1;
      for (let d = 0; d < dim; d++)
        sums[label * dim + d] = (sums[label * dim + d] as number) + (row[base + d] as number);
    }
  }
  const embeddings = new Float32Array(numClasses * dim);
  for (let c = 0; c < numClasses; c++) {
    const n = counts[c] as number;
    for (let d = 0; d < dim; d++) embeddings[c * dim + d] = n > 0 ? (sums[c * dim + d] as number) / n : 0;
  }
  return { embeddings, numClasses, dim };
}
