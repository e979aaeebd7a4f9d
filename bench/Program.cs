namespace MaskBit.Bench; class P{static void Main(){}}
