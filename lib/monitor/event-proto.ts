import protobuf from 'protobufjs';

/**
 * The subset of TensorFlow's `Event` / `Summary` protos (tensorflow/core/util/event.proto,
 * tensorflow/core/framework/summary.proto) that TensorBoard needs for scalars and images.
 * Field numbers are the upstream ones; fields we never write are omitted (protobuf tolerates that).
 */
const root = protobuf.Root.fromJSON({
  nested: {
    tensorboard: {
      nested: {
        Event: {
          oneofs: { what: { oneof: ['file_version', 'summary', 'session_log'] } },
          fields: {
            wall_time: { type: 'double', id: 1 },
            step: { type: 'int64', id: 2 },
            file_version: { type: 'string', id: 3 },
            summary: { type: 'Summary', id: 5 },
            session_log: { type: 'SessionLog', id: 7 },
          },
        },
        SessionLog: {
          // status: 0 UNSPECIFIED, 1 START, 2 STOP, 3 CHECKPOINT
          fields: {
            status: { type: 'int32', id: 1 },
            checkpoint_path: { type: 'string', id: 2 },
            msg: { type: 'string', id: 3 },
          },
        },
        Summary: {
          fields: { value: { rule: 'repeated', type: 'Value', id: 1 } },
          nested: {
            Image: {
              fields: {
                height: { type: 'int32', id: 1 },
                width: { type: 'int32', id: 2 },
                colorspace: { type: 'int32', id: 3 },
                encoded_image_string: { type: 'bytes', id: 4 },
              },
            },
            Value: {
              oneofs: { value: { oneof: ['simple_value', 'image'] } },
              fields: {
                tag: { type: 'string', id: 1 },
                simple_value: { type: 'float', id: 2 },
                image: { type: 'Image', id: 4 },
              },
            },
          },
        },
      },
    },
  },
});

const EventType = root.lookupType('tensorboard.Event');

/** 1 grayscale, 2 grayscale+alpha, 3 RGB, 4 RGBA (TensorBoard's Summary.Image.colorspace). */
export interface SummaryImage {
  height: number;
  width: number;
  colorspace: number;
  png: Uint8Array;
}

export type SummaryValue = { tag: string; simpleValue: number } | { tag: string; image: SummaryImage };

/** The first record of every event file; TensorBoard uses it to detect the file format version. */
export function encodeFileVersionEvent(wallTime: number): Uint8Array {
  return EventType.encode(
    EventType.fromObject({ wall_time: wallTime, step: 0, file_version: 'brain.Event:2' }),
  ).finish();
}

export function encodeSummaryEvent(wallTime: number, step: number, values: SummaryValue[]): Uint8Array {
  const value = values.map((v) =>
    'simpleValue' in v
      ? { tag: v.tag, simple_value: v.simpleValue }
      : {
          tag: v.tag,
          image: {
            height: v.image.height,
            width: v.image.width,
            colorspace: v.image.colorspace,
            encoded_image_string: v.image.png,
          },
        },
  );
  return EventType.encode(EventType.fromObject({ wall_time: wallTime, step, summary: { value } })).finish();
}

/**
 * SessionLog START at `step`: TensorBoard (file_version 2 readers) then drops every point it has read
 * at `step` or later, so the steps a resumed run logs again replace the crashed attempt's.
 */
export function encodeSessionStartEvent(wallTime: number, step: number, msg: string): Uint8Array {
  return EventType.encode(
    EventType.fromObject({ wall_time: wallTime, step, session_log: { status: 1, msg } }),
  ).finish();
}

/** Decodes an Event to a plain object (tests and debugging). */
export function decodeEvent(data: Uint8Array): Record<string, unknown> {
  return EventType.toObject(EventType.decode(data), { longs: Number, bytes: Array, oneofs: true }) as Record<
    string,
    unknown
  >;
}
