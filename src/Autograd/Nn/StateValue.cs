namespace MaskBit.Autograd.Nn;

/// <summary>A value offered to <see cref="Module.LoadStateDict{T}"/>: its shape and kind are known before its values
/// are read, and <see cref="CopyTo"/> writes them straight into the module's tensor in that tensor's type (a
/// checkpoint's tensor is read and converted one at a time, never as a second copy of the whole model).</summary>
public interface IStateValue
{
    int[] Shape { get; }
    /// <summary>Integer or bool values (they load into Int32 tensors only).</summary>
    bool IsInteger { get; }
    /// <summary>Writes the values into <paramref name="target"/> (same shape), converted to its type.</summary>
    void CopyTo(Tensor target);
}
