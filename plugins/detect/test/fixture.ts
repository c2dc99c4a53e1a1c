import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { datasetSchema, writeShards, type ShardSchema } from '@distillery/runtime/shards';
import { Rng } from '@distillery/runtime/rng';

export const SIZE = 32;

/**
 * A detection set drawn here: 32x32 images with 1-2 objects, class 0 a filled square, class 1 a
 * hollow one (side 6-12 pixels), on faint noise; one split per key of `rows`. COCO ground truth
 * per split in coco/<split>.json as the dataset stage writes it (file_name = row id, category id =
 * class id, annotation ids from 1).
 */
export async function writeDataset(path: string, rows: Record<string, number>): Promise<void> {
  const rng = new Rng(5);
  const schema: ShardSchema = datasetSchema({
    shape: [SIZE, SIZE, 1],
    input: 'pixels',
    labels: 'multi',
    numClasses: 2,
  });
  schema.columns.push(
    { name: 'boxes', type: 'float32', list: true },
    { name: 'box_labels', type: 'int32', list: true },
  );
  const ids: string[] = [];
  const splits: string[] = [];
  const pixels: number[] = [];
  const boxes: number[] = [];
  const boxOffsets = [0];
  const boxLabels: number[] = [];
  const labelOffsets = [0];
  const labels: number[] = [];
  const coco: Record<string, { images: object[]; annotations: object[]; categories: object[] }> = {};
  for (const [split, n] of Object.entries(rows)) {
    coco[split] = {
      images: Array.from({ length: n }, (_, i) => ({ id: i, file_name: `${split}/${i}`, width: SIZE, height: SIZE })),
      annotations: [],
      categories: [0, 1].map((id) => ({ id, name: ['filled', 'hollow'][id], supercategory: 'square' })),
    };
    for (let i = 0; i < n; i++) {
      const image = Array.from({ length: SIZE * SIZE }, () => rng.int(20));
      const count = 1 + rng.int(2);
      const present = new Set<number>();
      for (let k = 0; k < count; k++) {
        const side = 6 + rng.int(7);
        const x = rng.int(SIZE - side);
        const y = rng.int(SIZE - side);
        const cls = rng.int(2);
        for (let dy = 0; dy < side; dy++)
          for (let dx = 0; dx < side; dx++) {
            const edge = dx === 0 || dy === 0 || dx === side - 1 || dy === side - 1;
            if (cls === 0 || edge) image[(y + dy) * SIZE + x + dx] = 230;
          }
        boxes.push(x, y, side, side);
        coco[split]!.annotations.push({
          id: coco[split]!.annotations.length + 1,
          image_id: i,
          category_id: cls,
          bbox: [x, y, side, side],
          area: side * side,
          iscrowd: 0,
        });
        boxLabels.push(cls);
        present.add(cls);
      }
      boxOffsets.push(boxLabels.length);
      labels.push(...[...present].sort());
      labelOffsets.push(labels.length);
      ids.push(`${split}/${i}`);
      splits.push(split);
      pixels.push(...image);
    }
  }
  mkdirSync(join(path, 'coco'), { recursive: true });
  for (const [split, json] of Object.entries(coco))
    writeFileSync(join(path, 'coco', `${split}.json`), JSON.stringify(json));
  await writeShards({ dir: path, schema, rowsPerShard: 40 }, [
    {
      rows: ids.length,
      columns: {
        id: ids,
        split: splits,
        labels: { offsets: Int32Array.from(labelOffsets), values: Int32Array.from(labels) },
        pixels: Uint8Array.from(pixels),
        boxes: { offsets: Int32Array.from(boxOffsets.map((o) => 4 * o)), values: Float32Array.from(boxes) },
        box_labels: { offsets: Int32Array.from(boxOffsets), values: Int32Array.from(boxLabels) },
      },
    },
  ]);
}
