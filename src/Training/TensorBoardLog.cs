using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace MaskBit.Models.Training;

/// <summary>
/// A TensorBoard event file (<c>events.out.tfevents.&lt;time&gt;.&lt;host&gt;</c>): TFRecord framing (length, masked
/// CRC-32C of the length, the record, its masked CRC-32C) around <c>tensorflow.Event</c> protocol buffers — the file
/// version, then scalars (<c>Summary.Value.simple_value</c>) and PNG images (<c>Summary.Image</c>). The few fields
/// are encoded here rather than through a protobuf library. A run that resumes at step k starts with a
/// <c>SessionLog.START</c> at k, which tells TensorBoard to drop what the interrupted run logged after k.
/// </summary>
public sealed class TensorBoardLog : IDisposable
{
    private readonly FileStream _file;

    public string Path { get; }

    public TensorBoardLog(string directory, long resumeStep)
    {
        Directory.CreateDirectory(directory);
        long seconds = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string name = $"events.out.tfevents.{seconds}.{Environment.MachineName}";
        // Two runs started within a second in one folder (tests) keep separate files.
        for (int k = 1; File.Exists(System.IO.Path.Combine(directory, name)); k++) name = $"events.out.tfevents.{seconds}.{Environment.MachineName}.{k}";
        Path = System.IO.Path.Combine(directory, name);
        _file = new FileStream(Path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
        WriteEvent(0, e => e.String(3, "brain.Event:2"));
        if (resumeStep > 0) WriteEvent(resumeStep, e => e.Message(6, log => log.Varint(1, 1)));   // SessionLog { status: START }
        _file.Flush();
    }

    /// <summary>One scalar per value (non-finite values are left out, as in metrics.jsonl's nulls).</summary>
    public void Scalars(long step, IReadOnlyDictionary<string, double> values)
    {
        WriteEvent(step, e => e.Message(5, summary =>
        {
            foreach (var (tag, value) in values)
                if (double.IsFinite(value)) summary.Message(1, v => { v.String(1, tag); v.Float(2, (float)value); });
        }));
        _file.Flush();
    }

    /// <summary>A PNG file as an image summary.</summary>
    public void Image(long step, string tag, string pngPath)
    {
        var png = File.ReadAllBytes(pngPath);
        // IHDR: width and height big-endian at bytes 16 and 20 of every PNG.
        if (png.Length < 24 || png[1] != 'P' || png[2] != 'N' || png[3] != 'G') throw new InvalidDataException($"{pngPath}: not a PNG file");
        int width = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)), height = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20));
        WriteEvent(step, e => e.Message(5, summary => summary.Message(1, v =>
        {
            v.String(1, tag);
            v.Message(4, image => { image.Varint(1, height); image.Varint(2, width); image.Varint(3, 3); image.Bytes(4, png); });
        })));
        _file.Flush();
    }

    private void WriteEvent(long step, Action<ProtoWriter> body)
    {
        var e = new ProtoWriter();
        e.Double(1, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0);
        e.Varint(2, step);
        body(e);
        WriteRecord(_file, e.ToArray());
    }

    /// <summary>TFRecord framing of one record.</summary>
    public static void WriteRecord(Stream stream, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], MaskedCrc32C(header[..8]));
        stream.Write(header);
        stream.Write(data);
        Span<byte> footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(footer, MaskedCrc32C(data));
        stream.Write(footer);
    }

    /// <summary>TFRecord's masked CRC-32C (Castagnoli): rotated right by 15 bits plus a constant.</summary>
    public static uint MaskedCrc32C(ReadOnlySpan<byte> data)
    {
        uint crc = Crc32C(data);
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        foreach (byte b in data) crc = BitOperations.Crc32C(crc, b);
        return ~crc;
    }

    public void Dispose() => _file.Dispose();

    /// <summary>The protocol-buffer wire format of the fields an event needs.</summary>
    private sealed class ProtoWriter
    {
        private readonly MemoryStream _buffer = new();

        public byte[] ToArray() => _buffer.ToArray();

        private void Key(int field, int wireType) => RawVarint((ulong)((field << 3) | wireType));

        private void RawVarint(ulong value)
        {
            for (; value >= 0x80; value >>= 7) _buffer.WriteByte((byte)(value | 0x80));
            _buffer.WriteByte((byte)value);
        }

        public void Varint(int field, long value) { Key(field, 0); RawVarint((ulong)value); }

        public void Double(int field, double value)
        {
            Key(field, 1);
            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteDoubleLittleEndian(bytes, value);
            _buffer.Write(bytes);
        }

        public void Float(int field, float value)
        {
            Key(field, 5);
            Span<byte> bytes = stackalloc byte[4];
            BinaryPrimitives.WriteSingleLittleEndian(bytes, value);
            _buffer.Write(bytes);
        }

        public void Bytes(int field, ReadOnlySpan<byte> value)
        {
            Key(field, 2);
            RawVarint((ulong)value.Length);
            _buffer.Write(value);
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, Action<ProtoWriter> body)
        {
            var inner = new ProtoWriter();
            body(inner);
            Bytes(field, inner.ToArray());
        }
    }
}
