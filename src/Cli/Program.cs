Console.Error.WriteLine("daemoneye-cli: commands land with the SDK"); return 1;
