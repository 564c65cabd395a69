using System.Net;
using DaemonEye.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Orleans.Dashboard;

namespace DaemonEye.Silo;

/// <summary>
/// The optional Orleans dashboard (<c>orleans.dashboard</c> or <c>--dashboard</c>): the agent's host
/// becomes a slim ASP.NET Core application whose only listener is Kestrel on
/// 127.0.0.1:<c>orleans.dashboard_port</c>. Off, the agent is a plain generic host with no HTTP at all.
/// </summary>
internal static class Dashboard
{
    public static bool IsEnabled(IConfiguration configuration) =>
        ConfigurationValidator.Bind<OrleansOptions>(configuration, OrleansOptions.SectionName).Dashboard;

    /// <summary>The host builder: a generic host, or with the dashboard a web application bound to loopback.</summary>
    public static IHostApplicationBuilder CreateBuilder(IConfiguration configuration)
    {
        if (!IsEnabled(configuration))
        {
            var generic = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
            generic.Configuration.Sources.Clear();
            generic.Configuration.AddConfiguration(configuration);
            return generic;
        }

        var port = ConfigurationValidator.Bind<OrleansOptions>(configuration, OrleansOptions.SectionName).DashboardPort;
        var web = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        web.Configuration.Sources.Clear();
        web.Configuration.AddConfiguration(configuration);
        web.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, port));
        return web;
    }

    /// <summary>Adds the dashboard's grain-call profiling and counters to the silo when it is on.</summary>
    public static ISiloBuilder AddDashboardIfEnabled(this ISiloBuilder silo, IConfiguration configuration) =>
        IsEnabled(configuration) ? silo.AddDashboard() : silo;

    /// <summary>Maps the dashboard's pages and JSON endpoints at / when the host is the web application.</summary>
    public static void MapIfEnabled(IHost host)
    {
        if (host is WebApplication app)
        {
            app.MapOrleansDashboard();
        }
    }

    /// <summary>The dashboard's address for the ready line.</summary>
    public static string? Address(IConfiguration configuration) =>
        IsEnabled(configuration) ? $"http://127.0.0.1:{ConfigurationValidator.Bind<OrleansOptions>(configuration, OrleansOptions.SectionName).DashboardPort}/" : null;
}
