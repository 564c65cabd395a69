Console.Error.WriteLine("daemoneye-agent: host composition lands with the gateway"); return 1;
