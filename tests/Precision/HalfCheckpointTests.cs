using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Interop;

namespace MaskBit.Tests.Precision;

/// <summary>Checkpoints stored as float32, float16 and bfloat16 (<see cref="TensorRecord.To"/>, safetensors) load back
/// into float32 tensors with exactly the values the 16-bit type holds; 16-bit engine tensors save as they are.</summary>
public class HalfCheckpointTests
{
    [TestCase(TensorDType.Float32)]
    [TestCase(TensorDType.Float16)]
    [TestCase(TensorDType.BFloat16)]
    public void RoundTripsInEveryStorageType(TensorDType stored)
    {
        var values = HalfConversionTests.Inputs().Where(float.IsFinite).Take(300).ToArray();
        var counts = new[] { 3, -1, 7 };
        string path = Path.Combine(Path.GetTempPath(), $"maskbit-half-{stored}-{Environment.ProcessId}.safetensors");
        try
        {
            var records = new[]
            {
                TensorRecord.FromFloats("weight", values, 3, 100),
                new TensorRecord("count", TensorDType.Int32, [3], System.Runtime.InteropServices.MemoryMarshal.AsBytes(counts.AsSpan()).ToArray()),
            };
            SafeTensors.Save(path, records.Select(r => r.To(stored)));
            var loaded = SafeTensors.Load(path).ToDictionary(r => r.Name);
            Assert.That(loaded["weight"].DType, Is.EqualTo(stored));
            Assert.That(loaded["count"].DType, Is.EqualTo(TensorDType.Int32), "integer tensors keep their type");
            var expected = stored switch
            {
                TensorDType.Float16 => values.Select(v => HalfBits.Round(v, DType.Float16)).ToArray(),
                TensorDType.BFloat16 => values.Select(v => HalfBits.Round(v, DType.BFloat16)).ToArray(),
                _ => values,
            };
            Assert.That(loaded["weight"].ToTensor().ToArray(), Is.EqualTo(expected));
            Assert.That(loaded["count"].ToTensor().ToIntArray(), Is.EqualTo(counts));
        }
        finally { File.Delete(path); }
    }

    [TestCase(DType.BFloat16, TensorDType.BFloat16)]
    [TestCase(DType.Float16, TensorDType.Float16)]
    public void SixteenBitTensorsSaveTheirBits(DType dtype, TensorDType stored)
    {
        var t = Tensor.FromArray(new[] { 1.5f, -0.1f, 3e4f, 1e-6f }, [2, 2]).To(dtype);
        var record = TensorRecord.FromTensor("x", t);
        Assert.That(record.DType, Is.EqualTo(stored));
        Assert.That(record.ToFloat32(), Is.EqualTo(t.ToArray()));
    }
}
